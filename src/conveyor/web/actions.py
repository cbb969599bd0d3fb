"""State-changing actions: enqueue, abort, retry, one job or a selection.

The JSON API and the forms share these; each checks nothing itself (the caller has
already required an ``admin`` principal and a CSRF token), logs who did what on the
``conveyor.web`` logger, and passes that principal as ``actor`` to the admin service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from conveyor.web import forms
from conveyor.web.auth import Principal
from conveyor.web.console import Console
from conveyor.web.errors import WebError, from_exception, read_form
from conveyor.web.security import CSRF_FIELD


class RenderForm(Protocol):
    """Renders the Enqueue page again, with what was submitted and its errors."""

    def __call__(
        self,
        request: Request,
        principal: Principal,
        name: str | None,
        *,
        submitted: dict[str, str] | None = ...,
        errors: dict[str, str] | None = ...,
        message: str | None = ...,
        status: int = ...,
    ) -> Awaitable[Response]: ...


#: The most jobs one bulk action takes.
MAX_BULK = 500
BULK_ACTIONS = ("abort", "retry")


class Actions:
    """The actions of one console, for the API and for forms."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def enqueue(
        self,
        principal: Principal,
        name: str,
        args: Mapping[str, Any] | None,
        scheduled_at: float | None = None,
        queue: str | None = None,
    ) -> str:
        """Enqueue task ``name``; returns the job's key."""
        key = await self.console.admin.enqueue(
            name, args, scheduled_at=scheduled_at, queue=queue, actor=principal.name
        )
        self.console.audit(principal, "enqueue", function=name, key=key, scheduled_at=scheduled_at)
        return key

    async def abort(self, principal: Principal, key: str, reason: str | None = None) -> str:
        """Abort a job; returns its status afterwards."""
        why = reason or f"aborted from the console by {principal.name}"
        status = await self.console.admin.abort(key, why, actor=principal.name)
        self.console.audit(principal, "abort", key=key, status=status)
        return status

    async def retry(self, principal: Principal, key: str) -> str:
        """Retry a failed or aborted job; returns its key."""
        result = await self.console.admin.retry(key, actor=principal.name)
        self.console.audit(principal, "retry", key=key)
        return result

    async def bulk(
        self, principal: Principal, action: str, keys: Sequence[str]
    ) -> list[dict[str, Any]]:
        """One action on several jobs; a result per key, failures included.

        Raises:
            WebError: 400 for an unknown action, no keys or too many.
        """
        if action not in BULK_ACTIONS:
            raise WebError(400, "bad_request", "action must be abort or retry", {"action": action})
        unique = list(dict.fromkeys(k for k in keys if k))
        if not unique:
            raise WebError(400, "bad_request", "select at least one job", {"keys": "empty"})
        if len(unique) > MAX_BULK:
            raise WebError(400, "bad_request", f"at most {MAX_BULK} jobs at once")
        results = []
        for key in unique:
            try:
                if action == "abort":
                    status = await self.abort(principal, key)
                else:
                    await self.retry(principal, key)
                    status = "queued"
                results.append({"key": key, "ok": True, "status": status})
            except Exception as exc:
                error = from_exception(exc)
                if error is None:
                    raise
                results.append({"key": key, "ok": False, "error": error.body()["error"]})
        return results

    # Forms

    async def _form(self, request: Request) -> tuple[Principal, Any]:
        form = await read_form(request)
        principal = await self.console.require_action(request, str(form.get(CSRF_FIELD, "")))
        return principal, form

    def _back(self, request: Request, form: Any, default: str) -> str:
        return self.console.safe_next(request, str(form.get("next", "")), default)

    async def abort_form(self, request: Request) -> Response:
        """The abort button of one job."""
        principal, form = await self._form(request)
        key = request.path_params["key"]
        back = self._back(request, form, "/jobs")
        try:
            status = await self.abort(principal, key)
        except Exception as exc:
            return self._failed(request, back, exc)
        return self.console.redirect(request, back, f"Job {key} is {status}.")

    async def retry_form(self, request: Request) -> Response:
        """The retry button of one job."""
        principal, form = await self._form(request)
        key = request.path_params["key"]
        back = self._back(request, form, "/jobs?state=failed")
        try:
            await self.retry(principal, key)
        except Exception as exc:
            return self._failed(request, back, exc)
        return self.console.redirect(request, back, f"Job {key} was queued again.")

    async def bulk_form(self, request: Request) -> Response:
        """The buttons under a selection of jobs."""
        principal, form = await self._form(request)
        back = self._back(request, form, "/jobs")
        keys = [str(k) for k in form.getlist("keys")]
        action = str(form.get("action", ""))
        try:
            results = await self.bulk(principal, action, keys)
        except WebError as exc:
            return self.console.redirect(request, back, exc.message, "error")
        done = sum(1 for r in results if r["ok"])
        verb = "Aborted" if action == "abort" else "Retried"
        text = f"{verb} {done} of {len(results)} job(s)."
        failures = [f"{r['key']}: {r['error']['message']}" for r in results if not r["ok"]]
        if failures:
            text += " Failed: " + "; ".join(failures[:5])
        return self.console.redirect(request, back, text, "error" if failures else "ok")

    def _failed(self, request: Request, back: str, exc: Exception) -> Response:
        error = from_exception(exc)
        if error is None:
            raise exc
        return self.console.redirect(request, back, error.message, "error")

    async def enqueue_form(self, request: Request, render: RenderForm) -> Response:
        """The Enqueue form: on an error the form again, with messages next to the fields."""
        principal, form = await self._form(request)
        submitted = {k: str(v) for k, v in form.multi_items() if k != CSRF_FIELD}
        name = submitted.get("job", "")
        available = await self.console.admin.available_jobs()
        job = next((j for j in available if j.name == name), None)
        if job is None:
            return await render(
                request,
                principal,
                name or None,
                submitted=submitted,
                errors={"job": "choose a job"},
                message=f"no job named {name!r}",
                status=422,
            )
        try:
            if submitted.get("mode") == "json":
                args: dict[str, Any] = forms.arguments_from_json(submitted.get("args", ""))
            else:
                args, field_errors = forms.arguments_from_fields(job, submitted)
                if field_errors:
                    raise WebError(422, "arguments", "some arguments are invalid", field_errors)
            scheduled = forms.scheduled_from_form(submitted)
            queue = submitted.get("queue") or None
            key = await self.enqueue(principal, name, args, scheduled, queue)
        except Exception as exc:
            error = from_exception(exc)
            if error is None:
                raise
            return await render(
                request,
                principal,
                name,
                submitted=submitted,
                errors=error.fields,
                message=error.message,
                status=error.status,
            )
        if scheduled is None:
            target = self.console.url(request, "/runs", key=key)
        else:
            target = self.console.url(request, "/jobs", state="scheduled")
        return self.console.redirect(request, target, f"Enqueued {name} (job {key}).")


__all__ = ["BULK_ACTIONS", "MAX_BULK", "Actions"]
