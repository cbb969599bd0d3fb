"""Errors as the console answers them: JSON for the API, a page for people, never a traceback.

Every error body of the API has one shape::

    {"error": {"type": "arguments", "message": "...", "fields": {"width": "expected int ..."}}}

Admin and core exceptions map to status codes here, once (:func:`from_exception`); an
unexpected exception is logged with its traceback on the ``conveyor.web`` logger and
answered with a 500 that says only that it happened (:class:`ErrorBoundary`).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.errors import (
    AdminError,
    ArgumentsError,
    JobNotFoundError,
    JobStateError,
    RunNotFoundError,
    SerializationError,
    UnknownFunctionError,
    UnknownQueueError,
)

logger = logging.getLogger("conveyor.web")


class WebError(Exception):
    """An error answered to the client as it is.

    Args:
        status: The HTTP status.
        type: A short machine-readable kind (``not_found``, ``arguments`` ...).
        message: What went wrong, for people.
        fields: Per-field messages (form fields, job arguments).
        headers: Extra response headers.
    """

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"type": self.type, "message": self.message, "fields": self.fields}}

    def response(self) -> JSONResponse:
        """The JSON response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_exception(exc: Exception) -> WebError | None:
    """The answer to an admin or core exception, or None for an unexpected one."""
    if isinstance(exc, WebError):
        return exc
    if isinstance(exc, ArgumentsError):
        return WebError(422, "arguments", str(exc), {str(k): v for k, v in exc.errors.items()})
    if isinstance(exc, UnknownFunctionError):
        return WebError(422, "unknown_job", str(exc), {"name": f"no job named {exc.function!r}"})
    if isinstance(exc, SerializationError):
        fields = {exc.argument: str(exc)} if exc.argument else {}
        return WebError(422, "serialization", str(exc), fields)
    if isinstance(exc, RunNotFoundError):
        return WebError(404, "run_not_found", str(exc))
    if isinstance(exc, JobNotFoundError):
        return WebError(404, "job_not_found", str(exc))
    if isinstance(exc, UnknownQueueError):
        return WebError(404, "queue_not_found", str(exc))
    if isinstance(exc, JobStateError):
        return WebError(409, "job_state", str(exc))
    if isinstance(exc, AdminError):
        return WebError(400, "bad_request", str(exc))
    return None


HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


class ErrorBoundary:
    """ASGI middleware: an unexpected exception becomes a logged 500, not a traceback.

    Unlike Starlette's ``ServerErrorMiddleware`` it does not re-raise, so a console mounted
    in a host application never hands the host an exception after answering.

    Args:
        app: The wrapped application.
        page: Renders the HTML error page for people: ``page(scope, status, message)``.
    """

    def __init__(self, app: ASGIApp, page: Any) -> None:
        self.app = app
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            return  # the client went away (a closed live stream): nothing to answer
        except Exception:
            logger.exception("console error on %s %s", scope.get("method"), scope.get("path", ""))
            if started:
                return
            response: Response
            if wants_json(scope):
                error = WebError(500, "internal", "internal error; the server log has details")
                response = error.response()
            else:
                response = self.page(
                    scope, 500, "Something went wrong; the server log has details."
                )
            await response(scope, receive, send)


def wants_json(scope: Scope) -> bool:
    """Whether a request is for the JSON API (its answers, errors included, are JSON)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    route = path[len(root) :] if root and path.startswith(root) else path
    return route.startswith("/api/") or route == "/api"


#: The largest form body read.
MAX_FORM = 1 << 20


async def read_form(request: Request) -> FormData:
    """A URL-encoded form (the console's forms carry no files, so no multipart parser).

    Raises:
        WebError: 413 for a body over :data:`MAX_FORM`, 415 for another content type.
    """
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_FORM:
        raise WebError(413, "too_large", f"the form is over {MAX_FORM} bytes")
    if body and kind != "application/x-www-form-urlencoded":
        raise WebError(415, "unsupported_media_type", "send the form URL-encoded")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise WebError(400, "bad_request", "the form is not UTF-8") from None
    items: list[tuple[str, str | UploadFile]] = list(parse_qsl(text, keep_blank_values=True))
    return FormData(items)


def json_body(data: bytes) -> Any:
    """Decode a JSON request body.

    Raises:
        WebError: 400 for malformed JSON.
    """
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebError(
            400, "malformed_json", f"the request body is not valid JSON: {exc}"
        ) from None


__all__ = [
    "HTTP_TYPES",
    "MAX_FORM",
    "ErrorBoundary",
    "WebError",
    "from_exception",
    "json_body",
    "read_form",
    "wants_json",
]
