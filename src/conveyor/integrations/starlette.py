"""Conveyor in a Starlette application: lifespan, request state, console and status routes.

::

    from conveyor.integrations import Conveyor, QueueConfig
    from conveyor.integrations.starlette import get_queue, mount_console, status_routes

    conveyor = Conveyor(QueueConfig("default", url="redis://localhost", tasks=[resize]))

    async def upload(request):
        job = await get_queue(request).enqueue("resize", name="cat.png")
        return JSONResponse({"key": job.key}, status_code=202)

    app = Starlette(
        routes=[Route("/upload", upload, methods=["POST"]), *status_routes(conveyor)],
        lifespan=conveyor.lifespan,
    )
    mount_console(app, "/jobs", conveyor, auth=console_auth(current_user))

The lifespan puts the holder on every ``request.state`` (``request.state.conveyor``, and
``request.state.queue`` for the default queue); :func:`get_queue` reads it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.integrations.core import Conveyor
from conveyor.integrations.status import JobStatusService, problem, status_path
from conveyor.queue import Queue

if TYPE_CHECKING:
    from conveyor.web.auth import AuthCallable, Principal, Role


def get_conveyor(request: HTTPConnection) -> Conveyor:
    """The :class:`Conveyor` of the application, from the request's lifespan state.

    Raises:
        ConfigurationError: When the application's lifespan did not yield it.
    """
    found = getattr(request.state, "conveyor", None)
    if not isinstance(found, Conveyor):
        raise ConfigurationError(
            "no Conveyor on request.state: pass lifespan=conveyor.lifespan to the "
            "application, or yield the state of 'async with conveyor.lifespan(app)' from "
            "its own lifespan"
        )
    return found


def get_queue(request: HTTPConnection, name: str = "default") -> Queue:
    """The queue named ``name`` of the application serving ``request``.

    Raises:
        ConfigurationError: Without a Conveyor lifespan, or for an unknown queue name.
    """
    return get_conveyor(request).queue(name)


def _user_name(user: Any) -> str:
    if isinstance(user, str):
        return user
    for attribute in ("username", "name", "email"):
        value = getattr(user, attribute, None)
        if isinstance(value, str) and value:
            return value
    return str(user)


def console_auth(
    user_of: Callable[[Any], Any],
    *,
    role: Role | Callable[[Any], Role | None] = "admin",
    name: Callable[[Any], str] = _user_name,
) -> AuthCallable:
    """Let into the console whom the application itself lets in.

    Args:
        user_of: The application's own check: ``(request) -> user or None``, sync or
            async. Raising ``HTTPException`` (401 or 403), as a FastAPI dependency that
            takes only the request does, counts as None. It receives a Starlette
            ``HTTPConnection``, which has the request's ``headers``, ``cookies`` and
            ``session``.
        role: ``"admin"`` (may enqueue, retry and abort), ``"read"``, or a function of
            the user returning either, or None to refuse that user.
        name: The principal's name, shown in the console and recorded as the actor of
            each action; the user's ``username``, ``name`` or ``email``, else ``str(user)``.

    Returns:
        A callable for ``auth=`` of :func:`mount_console` or
        :func:`conveyor.web.create_app`.
    """
    from conveyor.web.auth import Principal

    async def check(connection: HTTPConnection) -> Principal | None:
        try:
            user = user_of(connection)
            if inspect.isawaitable(user):
                user = await user
        except HTTPException as exc:
            if exc.status_code in (401, 403):
                return None
            raise
        if user is None:
            return None
        granted = role(user) if callable(role) else role
        if granted is None:
            return None
        return Principal(name(user), granted, "host")

    return check


def mount_console(
    app_or_routes: Starlette | list[BaseRoute],
    path: str,
    conveyor: Conveyor,
    *,
    auth: Any = None,
    **options: Any,
) -> Starlette:
    """Mount the console of ``conveyor`` at ``path`` in a Starlette or FastAPI app.

    Args:
        app_or_routes: The application, or the list of routes it is built from.
        path: Where the console answers (``/admin/queue``); its links carry the prefix.
        conveyor: The application's queues.
        auth: Who may use it (see :meth:`Conveyor.console`); :func:`console_auth` reuses
            the application's own user check.
        **options: Other arguments of :func:`conveyor.web.create_app`.

    Returns:
        The console application.
    """
    console = conveyor.console(auth=auth, **options)
    prefix = "/" + path.strip("/")
    if isinstance(app_or_routes, Starlette):
        app_or_routes.mount(prefix, console)
    else:
        app_or_routes.append(Mount(prefix, app=console))
    return console


def problem_response(exc: ConveyorError) -> JSONResponse:
    """The JSON answer of a status route's error (see
    :func:`~conveyor.integrations.status.problem`); other errors are raised again."""
    found = problem(exc)
    if found is None:
        raise exc
    status, body = found
    return JSONResponse(body, status_code=status)


def status_routes(
    conveyor: Conveyor, prefix: str = "/tasks", *, tasks: Iterable[str] | None = None
) -> list[BaseRoute]:
    """Routes to trigger tasks and read their jobs' status, for clients of the app.

    ``POST {prefix}/{task_name}`` with a JSON object of arguments answers 202 with
    ``key``, ``queue``, ``task``, ``status`` and ``status_url`` (also the ``Location``
    header); 404 for a task that cannot be triggered, 422 with ``errors`` per argument.
    ``GET {prefix}/jobs/{key}`` answers the job's status, result, error, progress and
    runs; 404 for an unknown key. See :mod:`conveyor.integrations.status`.

    They have no authentication of their own: add the routes behind the application's
    (a ``Mount`` with middleware, and ``prefix=""``).

    Args:
        conveyor: The application's queues.
        prefix: The path the routes start with.
        tasks: The tasks that may be triggered; all of them by default.
    """
    service = JobStatusService(conveyor, tasks)
    base = "/" + prefix.strip("/") if prefix.strip("/") else ""

    async def trigger(request: Request) -> Response:
        body = await request.body()
        try:
            args = json.loads(body) if body.strip() else None
        except ValueError:
            detail = "the body must be a JSON object of the task's arguments"
            return JSONResponse({"detail": detail, "errors": {}}, status_code=400)
        try:
            accepted = await service.trigger(request.path_params["task_name"], args)
        except ConveyorError as exc:
            return problem_response(exc)
        location = status_path(request.url.path, accepted.key)
        content = {**accepted.to_dict(), "status_url": location}
        return JSONResponse(content, status_code=202, headers={"Location": location})

    async def job_status(request: Request) -> Response:
        try:
            report = await service.report(request.path_params["key"])
        except ConveyorError as exc:
            return problem_response(exc)
        return JSONResponse(report.to_dict())

    return [
        Route(f"{base}/jobs/{{key}}", job_status, methods=["GET"]),
        Route(f"{base}/{{task_name}}", trigger, methods=["POST"]),
    ]


__all__ = [
    "console_auth",
    "get_conveyor",
    "get_queue",
    "mount_console",
    "status_routes",
]
