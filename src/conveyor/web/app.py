"""The app factory: :func:`create_app` builds one console, with its own state.

Mount it anywhere::

    console = create_app(Admin.from_settings(settings))
    app.mount("/admin/queue", console)          # Starlette or FastAPI

Every URL the console writes is relative to the path it is mounted at (the ASGI
``root_path``), so links, forms and live streams work under any prefix.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from conveyor.admin.service import Admin
from conveyor.errors import ConveyorError
from conveyor.web.actions import Actions
from conveyor.web.api import Api
from conveyor.web.auth import AuthOption, normalize_auth
from conveyor.web.console import PACKAGE_DIR, Console, logger
from conveyor.web.errors import HTTP_TYPES, ErrorBoundary, WebError, from_exception
from conveyor.web.events import Events
from conveyor.web.pages import Pages
from conveyor.web.security import SESSION_MAX_AGE_S, Gate, SecurityHeaders


def create_app(
    admin: Admin,
    *,
    auth: AuthOption | Iterable[AuthOption] | None = None,
    title: str = "Conveyor",
    public: bool = False,
    secret_key: str | None = None,
    login_url: str | None = None,
    session_max_age_s: float = SESSION_MAX_AGE_S,
    poll_interval: float = 1.0,
    behind_proxy: bool = False,
    health_probes: bool = True,
) -> Starlette:
    """Build a console over ``admin``.

    Args:
        admin: The admin service; the console reads and changes queues only through it.
        auth: ``BasicAuth``, ``TokenAuth``, a host callable ``(request) -> Principal | None``,
            or a list of them; None reads the environment (``CONVEYOR_AUTH_USER`` /
            ``CONVEYOR_AUTH_PASSWORD``, SAQ's ``AUTH_USER`` / ``AUTH_PASSWORD``,
            ``CONVEYOR_AUTH_TOKEN`` ...; see :func:`conveyor.web.auth.auth_from_env`).
        title: Shown in the header and page titles.
        public: Whether the server is reachable from other machines (not bound to
            127.0.0.1 or localhost). Without authentication, a public console lets nobody
            in, and a local one lets in requests from this machine only.
        secret_key: Signs sessions and CSRF tokens (``CONVEYOR_SECRET_KEY``; derived from
            the credentials when not given).
        login_url: A host application's sign-in page, for people not signed in.
        session_max_age_s: Seconds a sign-in through the console's form lasts.
        poll_interval: Seconds between two reads of the admin service by one live stream.
        behind_proxy: The console is reached through a reverse proxy. Then, without
            credentials, it lets nobody in (local mode would see the proxy's address and
            ``Host`` and take every visitor for this machine). Requests carrying proxy
            headers (``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``, ``Via``) never get
            local mode in any case.
        health_probes: Serve ``/livez`` and ``/readyz`` without credentials: they answer
            only ``{"status": "ok"}`` (200) or ``{"status": "unavailable"}`` (503).

    Returns:
        A Starlette application, to serve or to mount.
    """
    gate = Gate(
        normalize_auth(auth),
        public=public,
        secret_key=secret_key,
        session_max_age_s=session_max_age_s,
        login_url=login_url,
        behind_proxy=behind_proxy,
    )
    console = Console(admin, gate, title=title, poll_interval=poll_interval)
    routes = _routes(console, health_probes=health_probes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Runs only when the console is the served app itself; a host application that
        # mounts it disconnects the admin service in its own shutdown.
        try:
            yield
        finally:
            console.close()
            await admin.disconnect()

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(ErrorBoundary, page=console.error_page),
        ],
        exception_handlers=_exception_handlers(console),
        lifespan=lifespan,
    )
    app.state.console = console
    return app


def _exception_handlers(console: Console) -> dict[Any, Any]:
    """JSON errors for the API, pages for people; unmapped errors are logged 500s."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error = WebError(
            exc.status_code,
            HTTP_TYPES.get(exc.status_code, "http_error"),
            str(exc.detail),
            headers=dict(exc.headers or {}),
        )
        return console.answer_error(request, error)

    async def known_error(request: Request, exc: Exception) -> Response:
        error = from_exception(exc)
        if error is None:
            logger.error("console error on %s %s", request.method, request.url.path, exc_info=exc)
            error = WebError(500, "internal", "internal error; the server log has details")
        return console.answer_error(request, error)

    return {HTTPException: http_error, WebError: known_error, ConveyorError: known_error}


def console_of(app: Starlette) -> Console:
    """The console state of an app built by :func:`create_app`."""
    console: Any = app.state.console
    assert isinstance(console, Console)
    return console


def _routes(console: Console, *, health_probes: bool) -> list[BaseRoute]:
    pages = Pages(console)
    actions = Actions(console)
    api = Api(console, actions)
    events = Events(console)

    async def favicon(request: Request) -> Response:
        return RedirectResponse(console.url(request, "/static/favicon.svg"), 301)

    async def enqueue_submit(request: Request) -> Response:
        return await actions.enqueue_form(request, pages.enqueue_form)

    probes = [Route("/livez", api.live), Route("/readyz", api.ready)] if health_probes else []
    return [
        *probes,
        Route("/", pages.overview, name="overview"),
        Route("/runs", pages.runs, name="runs"),
        Route("/runs/{run_id}", pages.run, name="run"),
        Route("/jobs", pages.jobs, name="jobs"),
        Route("/jobs/bulk", actions.bulk_form, methods=["POST"]),
        Route("/jobs/{key}/abort", actions.abort_form, methods=["POST"]),
        Route("/jobs/{key}/retry", actions.retry_form, methods=["POST"]),
        Route("/enqueue", pages.enqueue, name="enqueue"),
        Route("/enqueue", enqueue_submit, methods=["POST"]),
        Route("/cron", pages.cron, name="cron"),
        Route("/login", pages.login, name="login"),
        Route("/login", pages.login_submit, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/events/overview", events.overview),
        Route("/events/runs", events.runs),
        Route("/events/runs/{run_id}/logs", events.logs),
        Route("/api/me", api.me),
        Route("/api/overview", api.overview),
        Route("/api/throughput", api.throughput),
        Route("/api/runs", api.runs),
        Route("/api/runs/{run_id}", api.run),
        Route("/api/runs/{run_id}/logs", api.logs),
        Route("/api/jobs", api.jobs),
        Route("/api/jobs/bulk", api.bulk, methods=["POST"]),
        Route("/api/jobs/{key}/abort", api.abort, methods=["POST"]),
        Route("/api/jobs/{key}/retry", api.retry, methods=["POST"]),
        Route("/api/available-jobs", api.available_jobs),
        Route("/api/cron", api.cron),
        Route("/api/enqueue", api.enqueue, methods=["POST"]),
        Route("/api/health", api.health),
        Route("/api/openapi.json", api.openapi),
        Route("/favicon.ico", favicon),
        Mount("/static", app=StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static"),
    ]


__all__ = ["console_of", "create_app"]
