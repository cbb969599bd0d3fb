"""Conveyor in a Litestar application: a plugin, ``Queue`` injection, console, status router.

::

    from litestar import Litestar, post
    from conveyor.integrations import Conveyor, QueueConfig
    from conveyor.integrations.litestar import ConveyorPlugin, QueueDependency, status_router

    conveyor = Conveyor(QueueConfig("default", url="postgresql://...", tasks=[registry]))

    @post("/signup")
    async def signup(queue: QueueDependency, data: Signup) -> dict[str, str]:
        job = await queue.enqueue("send_welcome_email", user_id=data.user_id)
        return {"key": job.key}

    app = Litestar(
        route_handlers=[signup, status_router(conveyor)],
        plugins=[ConveyorPlugin(conveyor, console_path="/queue")],
    )

The plugin adds the Conveyor's lifespan, injects ``queue`` (the default queue) and
``conveyor`` (the holder) into any handler that asks for them (annotated
``QueueDependency`` and ``ConveyorDependency``, Litestar's ``NamedDependency[...]``), and
mounts the console.
"""

# No ``from __future__ import annotations``: Litestar reads the handlers' annotations at
# run time, and those of functions nested in a factory do not resolve from strings.

from collections.abc import Iterable
from typing import Any, TypeAlias

from litestar import Request, Response, Router, get, post
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol

from conveyor.errors import ConfigurationError, ConveyorError

try:
    from litestar.di import NamedDependency
    from litestar.params import FromPath, JSONBody
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigurationError(
        "conveyor.integrations.litestar needs Litestar 2.25 or later (explicit dependency, "
        "path and body markers): pip install 'litestar>=2.25'"
    ) from exc
from conveyor.integrations.core import Conveyor
from conveyor.integrations.status import JobStatusService, problem, status_path
from conveyor.queue import Queue

#: A handler parameter the plugin injects the default queue into: ``queue: QueueDependency``.
QueueDependency: TypeAlias = NamedDependency[Queue]
#: A handler parameter the plugin injects the holder into: ``conveyor: ConveyorDependency``.
ConveyorDependency: TypeAlias = NamedDependency[Conveyor]


def provide_queue(conveyor: Conveyor, name: str = "default") -> Provide:
    """A dependency provider of the queue named ``name``.

    ``dependencies={"emails": provide_queue(conveyor, "emails")}`` on the app, a router
    or a handler injects it into parameters named ``emails``.

    Raises:
        ConfigurationError: For an unknown queue name.
    """
    queue = conveyor.queue(name)

    def provider() -> Queue:
        return queue

    return Provide(provider, sync_to_thread=False)


class ConveyorPlugin(InitPluginProtocol):
    """Wires a :class:`Conveyor` into a Litestar application.

    Args:
        conveyor: The application's queues.
        console_path: Where to mount the console (``/queue``); no console when None.
        console_auth: Who may use the console (see :meth:`Conveyor.console`);
            :func:`conveyor.integrations.starlette.console_auth` reuses the
            application's own user check (it receives a Starlette ``HTTPConnection``,
            with the request's ``headers`` and ``cookies``).
        queue_key: The name under which the default queue is injected.
        **console_options: Other arguments of :func:`conveyor.web.create_app`.
    """

    def __init__(
        self,
        conveyor: Conveyor,
        *,
        console_path: str | None = None,
        console_auth: Any = None,
        queue_key: str = "queue",
        **console_options: Any,
    ) -> None:
        self.conveyor = conveyor
        self.console_path = console_path
        self.console_auth = console_auth
        self.queue_key = queue_key
        self.console_options = console_options

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the lifespan, the dependencies and the console to the application."""
        conveyor = self.conveyor

        def provide_conveyor() -> Conveyor:
            return conveyor

        app_config.lifespan.append(conveyor.lifespan)
        app_config.dependencies.setdefault(
            self.queue_key, provide_queue(conveyor, conveyor.default_queue)
        )
        app_config.dependencies.setdefault(
            "conveyor", Provide(provide_conveyor, sync_to_thread=False)
        )
        app_config.signature_namespace.update({"Queue": Queue, "Conveyor": Conveyor})
        if self.console_path is not None:
            from conveyor.web import litestar_handler

            console = conveyor.console(auth=self.console_auth, **self.console_options)
            app_config.route_handlers.append(litestar_handler(console, self.console_path))
        return app_config


def _answer(exc: ConveyorError) -> Response[Any]:
    found = problem(exc)
    if found is None:
        raise exc
    status, body = found
    return Response(body, status_code=status)


def status_router(
    conveyor: Conveyor,
    *,
    path: str = "/tasks",
    tasks: Iterable[str] | None = None,
    **router_options: Any,
) -> Router:
    """A ``Router`` to trigger tasks and read their jobs' status.

    ``POST {path}/{task_name}`` with a JSON object of arguments answers 202 with the
    job's ``key`` and ``status_url`` (also the ``Location`` header), 404 for a task that
    cannot be triggered, 422 with ``errors`` per argument; ``GET {path}/jobs/{key}``
    answers the job's status, result, error, progress and runs, or 404. See
    :mod:`conveyor.integrations.status`.

    Args:
        conveyor: The application's queues.
        path: The router's path.
        tasks: The tasks that may be triggered; all of them by default.
        **router_options: For ``Router``: ``guards=[...]`` puts the routes behind the
            application's authentication, ``tags=[...]`` ...
    """
    service = JobStatusService(conveyor, tasks)

    @post("/{task_name:str}", status_code=202)
    async def trigger_task(
        task_name: FromPath[str],
        request: Request[Any, Any, Any],
        data: JSONBody[dict[str, Any] | None] = None,
    ) -> Response[Any]:
        try:
            accepted = await service.trigger(task_name, data)
        except ConveyorError as exc:
            return _answer(exc)
        location = status_path(request.url.path, accepted.key)
        content = {**accepted.to_dict(), "status_url": location}
        return Response(content, status_code=202, headers={"Location": location})

    @get("/jobs/{key:str}")
    async def job_status(key: FromPath[str]) -> Response[Any]:
        try:
            report = await service.report(key)
        except ConveyorError as exc:
            return _answer(exc)
        return Response(report.to_dict())

    return Router(path=path, route_handlers=[trigger_task, job_status], **router_options)


__all__ = [
    "ConveyorDependency",
    "ConveyorPlugin",
    "QueueDependency",
    "provide_queue",
    "status_router",
]
