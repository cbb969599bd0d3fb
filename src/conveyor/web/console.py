"""One console's state and plumbing: its admin service, gate, templates, and helpers.

A :class:`Console` is built by :func:`conveyor.web.create_app` and owned by the app it
returns; nothing lives at module level, so two consoles mounted side by side never share
a queue, a key, a template cache or a cookie.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from conveyor.admin.service import Admin
from conveyor.web.auth import Principal
from conveyor.web.errors import WebError, wants_json
from conveyor.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    Gate,
    SignInThrottled,
    cookie_name,
    cookie_path,
)

logger = logging.getLogger("conveyor.web")

PACKAGE_DIR = Path(str(resources.files("conveyor.web")))
STATUSES = ("running", "complete", "failed", "aborted", "retried")


def format_ts(value: float | None, fmt: str = "full") -> Markup:
    """A ``<time>`` element, in UTC; the page's script shows it in the browser's zone.

    Args:
        value: Epoch seconds.
        fmt: ``full`` (date and time; the script adds how long ago or ahead), ``clock``
            (time with milliseconds, for logs), or ``text`` (plain text in UTC, for an
            attribute).
    """
    if not value:
        return Markup('<span class="muted">—</span>')
    moment = datetime.fromtimestamp(value, UTC)
    if fmt == "text":
        return Markup.escape(moment.strftime("%Y-%m-%d %H:%M:%S UTC"))
    if fmt == "clock":
        text = moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    else:
        text = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    markup = Markup('<time datetime="{iso}" data-ts="{ts:.3f}" data-fmt="{fmt}">{text}</time>')
    return markup.format(iso=moment.isoformat(), ts=value, fmt=fmt, text=text)


def format_duration(seconds: float | None) -> str:
    """``0.35 s``, ``2 min 5 s``, ``3 h 10 min``."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def pretty_json(value: Any) -> str:
    """Indented JSON for display."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=repr)


def short_json(value: Any, limit: int = 80) -> str:
    """One-line JSON, cut at ``limit`` characters."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ts"] = format_ts
    env.filters["duration"] = format_duration
    env.filters["pretty_json"] = pretty_json
    env.filters["short_json"] = short_json
    return env


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted((PACKAGE_DIR / "static").iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


class Console:
    """The state one console app owns.

    Args:
        admin: The admin service everything is read and changed through.
        gate: Authentication and CSRF.
        title: Shown in the header and the page titles.
        poll_interval: Seconds between two reads of the admin service by one live stream.
    """

    def __init__(self, admin: Admin, gate: Gate, *, title: str, poll_interval: float) -> None:
        self.admin = admin
        self.gate = gate
        self.title = title
        self.poll_interval = max(float(poll_interval), 0.05)
        self.env = _environment()
        self.static_version = _static_version()
        self.closing = asyncio.Event()

    def close(self) -> None:
        """End the live streams (the server is shutting down)."""
        self.closing.set()

    async def wait_closing(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True when the console is closing."""
        try:
            await asyncio.wait_for(self.closing.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # URLs

    @staticmethod
    def root(connection: HTTPConnection) -> str:
        """The path the console is mounted at ("" at the site's root)."""
        return str(connection.scope.get("root_path", "")).rstrip("/")

    def url(self, connection: HTTPConnection, path: str, **query: Any) -> str:
        """A root-relative URL inside this console, with the non-empty query values."""
        params = {k: v for k, v in query.items() if v not in (None, "")}
        suffix = f"?{urlencode(params)}" if params else ""
        return f"{self.root(connection)}{path}{suffix}"

    def safe_next(self, connection: HTTPConnection, target: str | None, default: str) -> str:
        """A redirect target inside this console (anything else becomes ``default``)."""
        root = self.root(connection)
        inside = target is not None and target.startswith(root + "/")
        if inside and target and not target.startswith("//") and "\\" not in target:
            return target
        return self.url(connection, default)

    # Access

    async def require(self, connection: HTTPConnection, role: str = "read") -> Principal:
        """The principal of a request that may do ``role`` things.

        Raises:
            WebError: 401 when nobody is signed in, 403 for a read-only principal asking
                to act.
        """
        try:
            principal = await self.gate.principal(connection)
        except SignInThrottled as exc:
            raise WebError(
                429, "throttled", str(exc), headers={"Retry-After": str(exc.retry_after_s)}
            ) from None
        if principal is None:
            headers = {}
            if self.gate.basic and "x-conveyor-console" not in connection.headers:
                headers["WWW-Authenticate"] = f'Basic realm="{self.title}", charset="UTF-8"'
            message = "sign in to use the console" if self.gate.configured else Gate.SETUP_HINT
            raise WebError(401, "unauthorized", message, headers=headers)
        if role == "admin" and not principal.can_act:
            raise WebError(
                403, "forbidden", f"{principal.name} has read-only access to the console"
            )
        return principal

    async def require_action(self, request: Request, token: str | None = None) -> Principal:
        """The principal of a state-changing request: an ``admin`` with a valid CSRF token.

        Raises:
            WebError: 401, or 403 for a read-only principal or a missing or wrong token.
        """
        principal = await self.require(request, "admin")
        submitted = token or request.headers.get(CSRF_HEADER)
        if not self.gate.csrf_ok(request, principal, submitted):
            raise WebError(
                403,
                "csrf",
                "missing or invalid CSRF token: reload the page and try again (API clients: "
                "send the token of GET /api/me as X-CSRF-Token, or use a bearer token)",
            )
        return principal

    def audit(self, principal: Principal, action: str, **details: Any) -> None:
        """Log an action on the ``conveyor.web`` logger with who did it."""
        text = ", ".join(f"{k}={v!r}" for k, v in details.items())
        logger.info(
            "%s by %s (%s): %s",
            action,
            principal.name,
            principal.via,
            text,
            extra={"console_action": action, "actor": principal.name},
        )

    # Rendering

    def render(
        self,
        request: HTTPConnection,
        template: str,
        context: Mapping[str, Any],
        *,
        principal: Principal | None,
        status: int = 200,
    ) -> HTMLResponse:
        """A page, with the CSRF cookie set when the browser has none yet."""
        nonce, new = self.gate.csrf_nonce(request)
        flash = self._read_flash(request)
        page = self.env.get_template(template).render(
            {
                "title": self.title,
                "root": self.root(request),
                "principal": principal,
                "csrf_field": CSRF_FIELD,
                "csrf_token": self.gate.csrf_token(nonce, principal) if principal else "",
                "static": f"{self.root(request)}/static",
                "static_version": self.static_version,
                "flash": flash,
                "path": request.url.path,
                "full_path": request.url.path
                + (f"?{request.url.query}" if request.url.query else ""),
                "statuses": STATUSES,
                "now": time.time(),
                **context,
            }
        )
        response = HTMLResponse(page, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        if new:
            self._cookie(response, request, self.gate.csrf_cookie_name(request), nonce)
        if flash is not None:
            response.delete_cookie(self._flash_name(request), path=cookie_path(self.root(request)))
        return response

    def fragment(self, template: str, context: Mapping[str, Any], request: HTTPConnection) -> str:
        """A piece of a page, for live updates."""
        return self.env.get_template(template).render(
            {"root": self.root(request), "statuses": STATUSES, "now": time.time(), **context}
        )

    def error_page(self, scope: Any, status: int, message: str) -> Response:
        """The page people see for an error."""
        request = Request(scope)
        page = self.env.get_template("error.html").render(
            {
                "title": self.title,
                "root": self.root(request),
                "principal": None,
                "static": f"{self.root(request)}/static",
                "static_version": self.static_version,
                "flash": None,
                "path": "",
                "full_path": "",
                "status": status,
                "message": message,
                "login": status == 401 and self.gate.has_login_form,
                "login_url": self.gate.login_url,
            }
        )
        return HTMLResponse(page, status_code=status)

    def answer_error(self, request: HTTPConnection, error: WebError) -> Response:
        """JSON for the API; for pages, the sign-in redirect or the error page."""
        if wants_json(request.scope):
            return error.response()
        if error.status == 401 and (self.gate.has_login_form or self.gate.login_url):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if self.gate.login_url:
                return RedirectResponse(f"{self.gate.login_url}?{urlencode({'next': target})}", 303)
            return RedirectResponse(self.url(request, "/login", next=target), 303)
        return self.error_page(request.scope, error.status, error.message)

    # Cookies

    def _cookie(
        self,
        response: Response,
        connection: HTTPConnection,
        name: str,
        value: str,
        max_age: int | None = None,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=cookie_path(self.root(connection)),
            httponly=True,
            samesite="lax",
            secure=connection.url.scheme == "https",
        )

    def _flash_name(self, connection: HTTPConnection) -> str:
        return cookie_name("conveyor_flash", self.root(connection))

    def redirect(
        self,
        connection: HTTPConnection,
        target: str,
        message: str | None = None,
        kind: str = "ok",
    ) -> RedirectResponse:
        """A 303 to ``target`` (a root-relative URL) with a message for the next page."""
        response = RedirectResponse(target, status_code=303)
        if message:
            signed = self.gate.signer.sign(json.dumps({"kind": kind, "text": message[:500]}))
            self._cookie(response, connection, self._flash_name(connection), signed, max_age=60)
        return response

    def _read_flash(self, connection: HTTPConnection) -> dict[str, str] | None:
        raw = connection.cookies.get(self._flash_name(connection))
        if not raw:
            return None
        value = self.gate.signer.unsign(raw, 120)
        try:
            data = json.loads(value) if value else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def sign_in(self, response: Response, connection: HTTPConnection, principal: Principal) -> None:
        """Set the session cookie of a sign-in."""
        self._cookie(
            response,
            connection,
            self.gate.session_cookie_name(connection),
            self.gate.session_value(principal),
            max_age=int(self.gate.session_max_age_s),
        )

    def sign_out(self, response: Response, connection: HTTPConnection) -> None:
        """Clear the session cookie."""
        response.delete_cookie(
            self.gate.session_cookie_name(connection), path=cookie_path(self.root(connection))
        )


__all__ = ["STATUSES", "Console", "format_duration", "format_ts", "pretty_json", "short_json"]
