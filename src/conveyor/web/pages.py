"""The console's pages: Overview, Runs, Run detail, Jobs, Enqueue, Cron, and signing in."""

from __future__ import annotations

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from conveyor.errors import RunNotFoundError
from conveyor.web import forms
from conveyor.web.auth import Principal
from conveyor.web.console import Console
from conveyor.web.errors import WebError, read_form
from conveyor.web.security import Gate, SignInThrottled
from conveyor.web.views import (
    JOB_LISTS,
    RANGES,
    WAITING_LISTS,
    RunFilters,
    charts,
    int_param,
    job_list,
    overview_counts,
    range_of,
    runs_context,
    runs_signature,
    text_param,
    version,
)

LOG_PAGE = 1000
LOG_LEVELS = ("", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Pages:
    """The page handlers of one console."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def overview(self, request: Request) -> Response:
        """Cards, charts and live workers."""
        principal = await self.console.require(request)
        range_name = range_of(request.query_params)
        overview, counters = await overview_counts(self.console)
        workers = self.console.fragment("_workers.html", {"overview": overview}, request)
        context = {
            "nav": "overview",
            "overview": overview,
            "counters": counters,
            "workers_html": Markup(workers),
            "version": version((counters, workers)),
            "charts": await charts(self.console, range_name),
            "range": range_name,
            "ranges": list(RANGES),
        }
        return self.console.render(request, "overview.html", context, principal=principal)

    async def runs(self, request: Request) -> Response:
        """Run history grouped by task, filtered and paginated."""
        principal = await self.console.require(request)
        filters = RunFilters.from_params(request.query_params)
        context = {"nav": "runs", **await runs_context(self.console, request, filters)}
        context["version"] = version(runs_signature(context["page"]))
        context["stream_url"] = self.console.url(
            request, "/events/runs", **filters.query(), v=context["version"]
        )
        return self.console.render(request, "runs.html", context, principal=principal)

    async def run(self, request: Request) -> Response:
        """One run: arguments, result, error, timing, attempts and its logs."""
        principal = await self.console.require(request)
        run_id = request.path_params["run_id"]
        params = request.query_params
        level = params.get("level", "").upper()
        if level not in LOG_LEVELS:
            raise WebError(400, "bad_request", f"unknown log level {level!r}")
        q = text_param(params, "q")
        cursor = int_param(params, "cursor", 0, 0, 10**12)
        try:
            detail = await self.console.admin.run(run_id)
        except RunNotFoundError as exc:
            raise WebError(404, "run_not_found", str(exc)) from None
        logs = await self.console.admin.logs(
            run_id, cursor=cursor, limit=LOG_PAGE, level=level or None, q=q
        )
        live = detail.run.status == "running" or logs.more
        context = {
            "nav": "runs",
            "detail": detail,
            "run": detail.run,
            "logs": logs,
            "level": level,
            "levels": LOG_LEVELS,
            "q": q or "",
            "cursor": cursor,
            "live": live,
            "stream_url": self.console.url(
                request,
                f"/events/runs/{run_id}/logs",
                cursor=logs.next_cursor,
                level=level,
                q=q,
            ),
        }
        return self.console.render(request, "run.html", context, principal=principal)

    async def jobs(self, request: Request) -> Response:
        """Queued, scheduled, running, failed and aborted jobs, with their actions."""
        principal = await self.console.require(request)
        params = request.query_params
        state = params.get("state") or "queued"
        offset = int_param(params, "offset", 0, 0, 10**9)
        limit = 50
        page, counts = await job_list(self.console, state, offset, limit)
        url = self.console.url
        context = {
            "nav": "jobs",
            "page": page,
            "counts": counts,
            "state": state,
            "states": list(JOB_LISTS),
            "waiting_lists": WAITING_LISTS,
            "multi_queue": len(self.console.admin.queues) > 1,
            "prev_url": url(request, "/jobs", state=state, offset=max(offset - limit, 0) or None)
            if offset
            else None,
            "next_url": url(request, "/jobs", state=state, offset=offset + limit)
            if offset + limit < page.total
            else None,
        }
        return self.console.render(request, "jobs.html", context, principal=principal)

    async def enqueue(self, request: Request) -> Response:
        """Pick a task, fill in its form (or raw JSON), run now or later."""
        principal = await self.console.require(request)
        name = request.query_params.get("job") or None
        prefill = request.query_params.get("args")
        if prefill is None or name is None:
            return await self.enqueue_form(request, principal, name)
        # A form filled in beforehand ("Run now" of a cron job: its own arguments).
        args = forms.arguments_from_json(prefill)
        chosen = next(
            (j for j in await self.console.admin.available_jobs() if j.name == name), None
        )
        submitted = forms.fields_from_arguments(chosen, args) if chosen else {}
        if request.query_params.get("queue"):
            submitted["queue"] = request.query_params["queue"]
        return await self.enqueue_form(request, principal, name, submitted=submitted)

    async def enqueue_form(
        self,
        request: Request,
        principal: Principal,
        name: str | None,
        *,
        submitted: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        message: str | None = None,
        status: int = 200,
    ) -> Response:
        """The Enqueue page, with what was submitted and its errors."""
        available = await self.console.admin.available_jobs()
        chosen = next((j for j in available if j.name == name), None)
        if name and chosen is None and status == 200:
            status, message = 404, f"no job named {name!r}"
        form = dict(submitted or {})
        fields = forms.widgets(chosen, submitted) if chosen else []
        shown = {w.name for w in fields} | {"args", "scheduled_at"}
        context = {
            "nav": "enqueue",
            "available": available,
            "job": chosen,
            "search": request.query_params.get("q", ""),
            "widgets": fields,
            "other_errors": {k: v for k, v in (errors or {}).items() if k not in shown},
            "raw_args": form.get("args")
            if "args" in form
            else (forms.pretty_args(chosen) if chosen else "{}"),
            "mode": form.get("mode", "form"),
            "when": form.get("when", "now"),
            "scheduled_at": form.get("scheduled_at", ""),
            "queue_names": [q.name for q in self.console.admin.queues],
            "queue": form.get("queue", ""),
            "errors": errors or {},
            "message": message,
        }
        return self.console.render(
            request, "enqueue.html", context, principal=principal, status=status
        )

    async def cron(self, request: Request) -> Response:
        """Each cron job: expression, zone, next and last runs."""
        principal = await self.console.require(request)
        rows = await self.console.admin.cron()
        context = {"nav": "cron", "rows": rows, "multi_queue": len(self.console.admin.queues) > 1}
        return self.console.render(request, "cron.html", context, principal=principal)

    # Signing in

    async def login(self, request: Request) -> Response:
        """The sign-in form (without credentials: how to set them)."""
        if not self.console.gate.configured:
            raise WebError(401, "unauthorized", Gate.SETUP_HINT)
        if not self.console.gate.has_login_form:
            raise WebError(404, "not_found", "this console has no sign-in form")
        target = self.console.safe_next(request, request.query_params.get("next"), "/")
        context = {"next": target, "error": None, "username": ""}
        return self.console.render(request, "login.html", context, principal=None)

    async def login_submit(self, request: Request) -> Response:
        """Check the user name and password, then set the session cookie."""
        if not self.console.gate.has_login_form:
            raise WebError(404, "not_found", "this console has no sign-in form")
        form = await read_form(request)
        username = str(form.get("username", ""))
        target = self.console.safe_next(request, str(form.get("next", "")), "/")
        try:
            principal = self.console.gate.check_password(
                username, str(form.get("password", "")), request
            )
        except SignInThrottled as exc:
            context = {"next": target, "error": f"{str(exc).capitalize()}.", "username": username}
            page = self.console.render(request, "login.html", context, principal=None, status=429)
            page.headers["Retry-After"] = str(exc.retry_after_s)
            return page
        if principal is None:
            context = {
                "next": target,
                "error": "Wrong user name or password.",
                "username": username,
            }
            return self.console.render(request, "login.html", context, principal=None, status=401)
        self.console.audit(principal, "sign-in")
        response = self.console.redirect(request, target)
        self.console.sign_in(response, request, principal)
        return response

    async def logout(self, request: Request) -> Response:
        """End the session (a POST with the CSRF token)."""
        form = await read_form(request)
        principal = await self.console.require(request)
        if not self.console.gate.csrf_ok(request, principal, str(form.get("csrf_token", ""))):
            raise WebError(403, "csrf", "missing or invalid CSRF token")
        response = self.console.redirect(request, self.console.url(request, "/login"))
        self.console.sign_out(response, request)
        return response


__all__ = ["LOG_LEVELS", "Pages"]
