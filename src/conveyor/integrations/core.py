"""The framework-neutral core: :class:`Conveyor` holds a web application's queues.

It connects every queue when the application starts and disconnects them when it stops,
builds one admin service over all of them (for the console and the status routes), and
can run their workers inside the web process. The framework adapters
(:mod:`~conveyor.integrations.starlette`, :mod:`~conveyor.integrations.fastapi`,
:mod:`~conveyor.integrations.litestar`) are thin layers over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.admin import Admin
from conveyor.admin.signatures import task_callable
from conveyor.errors import ConfigurationError
from conveyor.integrations.config import QueueConfig
from conveyor.queue import Queue
from conveyor.worker import Worker

if TYPE_CHECKING:
    from starlette.applications import Starlette

logger = logging.getLogger("conveyor.integrations")


class Conveyor:
    """The queues of a web application, connected for as long as the application runs.

    Args:
        queues: One queue configuration or several, each with its own name.
        run_workers: Run workers inside the web process: ``True`` for every queue, or the
            names of the queues to run. Off by default, and best left off in production
            (see below).

    Raises:
        ConfigurationError: For two queues of one name, or two different functions under
            one task name on two queues (the console and the status routes find a task
            by its name).

    Workers inside the web process suit development, demos and small single-process
    deployments. Run them as their own process (``conveyor myapp.worker_settings``)
    instead when:

    * the application runs in several web processes (``uvicorn --workers N``, gunicorn,
      several containers): each would run a worker, and all of them share the
      ``concurrency`` of none;
    * jobs are CPU-heavy: they run on the event loop or in its threads and slow every
      request down;
    * deploys stop web processes abruptly: a killed web process takes its running jobs
      with it (they are recovered, after their lease, by another worker), and a graceful
      stop waits up to ``shutdown_grace_period_s`` for running jobs before the process
      exits.

    Example::

        conveyor = Conveyor(QueueConfig("default", url="sqlite:///jobs.db", tasks=[send]))
        app = Starlette(routes=routes, lifespan=conveyor.lifespan)
    """

    def __init__(
        self,
        queues: QueueConfig | Sequence[QueueConfig],
        *,
        run_workers: bool | Collection[str] = False,
    ) -> None:
        configs = [queues] if isinstance(queues, QueueConfig) else list(queues)
        if not configs:
            raise ConfigurationError("Conveyor needs at least one QueueConfig")
        self.configs: dict[str, QueueConfig] = {}
        for config in configs:
            if config.name in self.configs:
                raise ConfigurationError(f"two queues are named {config.name!r}")
            self.configs[config.name] = config
        if isinstance(run_workers, bool):
            self.run_workers = list(self.configs) if run_workers else []
        else:
            run_workers = [run_workers] if isinstance(run_workers, str) else run_workers
            unknown = sorted(set(run_workers) - set(self.configs))
            if unknown:
                raise ConfigurationError(
                    f"run_workers names unknown queues {unknown}; the queues are "
                    f"{', '.join(self.configs)}"
                )
            self.run_workers = [name for name in self.configs if name in run_workers]
        self.task_queues = _task_queues(configs)
        self.workers: list[Worker] = []
        self._admin: Admin | None = None
        self._consoles: list[Starlette] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._connected_here: list[Queue] = []
        self._started = False

    def __repr__(self) -> str:
        return f"Conveyor<queues={list(self.configs)}, run_workers={self.run_workers}>"

    # Finding queues

    @property
    def queues(self) -> list[Queue]:
        """Every queue, in the order of the configurations."""
        return [config.queue for config in self.configs.values()]

    @property
    def default_queue(self) -> str:
        """The name of the queue asked for without a name: ``default``, else the first."""
        return "default" if "default" in self.configs else next(iter(self.configs))

    def queue(self, name: str = "default") -> Queue:
        """The queue named ``name``.

        Raises:
            ConfigurationError: When there is none, naming those there are.
        """
        config = self.configs.get(name)
        if config is None:
            raise ConfigurationError(
                f"no queue named {name!r}; the queues are {', '.join(self.configs)}"
            )
        return config.queue

    def worker_settings(self, name: str = "default") -> dict[str, Any]:
        """The worker settings dict of queue ``name``, to run its worker in its own process.

        Expose it as a zero-argument function of a module, then run
        ``conveyor myapp.worker_settings``::

            def worker_settings() -> dict[str, Any]:
                return conveyor.worker_settings("default")
        """
        self.queue(name)  # raises with the known names
        return self.configs[name].settings()

    # The admin service and the console

    @property
    def admin(self) -> Admin:
        """One admin service over every queue, their tasks and cron jobs (built once)."""
        if self._admin is None:
            settings = [config.settings() for config in self.configs.values()]
            self._admin = Admin.from_settings_list(settings)
        return self._admin

    def console(self, *, auth: Any = None, **options: Any) -> Starlette:
        """A console over :attr:`admin`, to mount in the web application.

        Its live streams end when this holder shuts down.

        Args:
            auth: As :func:`conveyor.web.create_app`: ``BasicAuth``, ``TokenAuth``, a
                callable ``(request) -> Principal | None`` (see
                :func:`conveyor.integrations.starlette.console_auth`), or a list of them;
                None reads the environment.
            **options: Other arguments of :func:`conveyor.web.create_app` (``title``,
                ``public``, ``secret_key``, ``login_url`` ...).

        Raises:
            MissingDependencyError: Without the web extra (``pip install "conveyor[web]"``).
        """
        from conveyor.web import create_app

        app = create_app(self.admin, auth=auth, **options)
        self._consoles.append(app)
        return app

    # Lifecycle

    async def startup(self) -> None:
        """Connect every queue, then start the workers of :attr:`run_workers`.

        A second call does nothing until :meth:`shutdown`. When a queue cannot be
        connected, what was started is stopped again before the error propagates.
        """
        if self._started:
            return
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.shutdown()
            raise

    async def _start(self) -> None:
        for queue in self.queues:
            if not queue._connected:
                await queue.connect()
                self._connected_here.append(queue)
        await self.admin.connect()
        for name in self.run_workers:
            worker = Worker(**self.configs[name].settings())
            task = asyncio.create_task(worker.start(), name=f"conveyor-worker-{name}")
            task.add_done_callback(self._worker_ended)
            self.workers.append(worker)
            self._worker_tasks.append(task)
            logger.info("started a worker for queue %r inside the web process", name)

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("a worker inside the web process stopped", exc_info=task.exception())

    async def shutdown(self) -> None:
        """Stop the workers gracefully, end the consoles' live streams, then disconnect the
        queues that :meth:`startup` connected."""
        if not self._started:
            return
        try:
            for worker in self.workers:
                await worker.stop()
            await asyncio.gather(*self._worker_tasks, return_exceptions=True)
            for app in self._consoles:
                app.state.console.close()
            if self._admin is not None:
                await self._admin.disconnect()
        finally:
            while self._connected_here:
                await self._connected_here.pop().disconnect()
            self.workers, self._worker_tasks = [], []
            self._started = False

    async def __aenter__(self) -> Conveyor:
        await self.startup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[dict[str, Any]]:
        """Start on entry, stop on exit; yields the lifespan state.

        Use it as an ASGI application's lifespan (``Starlette(lifespan=conveyor.lifespan)``,
        ``FastAPI(lifespan=...)``, Litestar's ``lifespan=[...]``), or inside the
        application's own::

            @asynccontextmanager
            async def lifespan(app):
                async with conveyor.lifespan(app) as state:
                    yield {**state, "db": database}

        The state, which Starlette copies onto each ``request.state``, holds ``conveyor``
        (this holder) and ``queue`` (the queue named ``default``, or else the first).
        """
        await self.startup()
        try:
            yield {"conveyor": self, "queue": self.queue(self.default_queue)}
        finally:
            await self.shutdown()


def _task_queues(configs: Sequence[QueueConfig]) -> dict[str, str]:
    """Task name to the first queue that runs it, refusing one name for two functions."""
    owners: dict[str, str] = {}
    functions: dict[str, Any] = {}
    for config in configs:
        for name, fn in config.functions.items():
            known = functions.get(name)
            if known is not None and task_callable(known) is not task_callable(fn):
                raise ConfigurationError(
                    f"task {name!r} is a different function on queues {owners[name]!r} and "
                    f"{config.name!r}; give one of them another name (task(name=...))"
                )
            functions.setdefault(name, fn)
            owners.setdefault(name, config.name)
    return owners


__all__ = ["Conveyor"]
