"""Registries of tasks: :class:`Registry` collects tasks and cron jobs from many modules.

Nothing is module-level state: each application creates its own registry and hands it to
its worker. Import it from :mod:`conveyor.tasks` (or ``conveyor``), beside the task handles
it collects (:mod:`conveyor.task_handles`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import tzinfo
from typing import Any, Concatenate, ParamSpec, TypeVar, cast, overload

from conveyor.cron import CronJob, CronSchedule
from conveyor.errors import ConfigurationError
from conveyor.task_handles import Task, TaskDecorator, as_task, describe_callable

P = ParamSpec("P")
R = TypeVar("R")


class Registry:
    """Tasks and cron jobs collected from many modules, for one worker.

    ``Worker(queue, functions=registry)`` registers its tasks and its cron jobs; a registry
    is also an iterable of its tasks. Nothing is global: create one per application, and
    :meth:`include` the registries of other modules.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._cron_jobs: list[CronJob] = []

    def __repr__(self) -> str:
        return f"Registry<tasks={list(self._tasks)}, cron_jobs={len(self._cron_jobs)}>"

    def __iter__(self) -> Iterator[Task[Any, Any]]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    @property
    def functions(self) -> list[Task[Any, Any]]:
        """The registered tasks, in registration order."""
        return list(self._tasks.values())

    @property
    def cron_jobs(self) -> list[CronJob]:
        """The registered cron jobs, in registration order."""
        return list(self._cron_jobs)

    def get(self, name: str) -> Task[Any, Any] | None:
        """The task registered as ``name``, or None."""
        return self._tasks.get(name)

    def _conflict(self, handle: Task[Any, Any]) -> str | None:
        existing = self._tasks.get(handle.name)
        if existing is None or existing is handle:
            return None
        if (
            existing.fn is handle.fn
            and existing.job_options == handle.job_options
            and existing.process == handle.process
        ):
            return None
        if existing.fn is handle.fn:
            before = {**existing.job_options, "process": existing.process}
            after = {**handle.job_options, "process": handle.process}
            return (
                f"task {handle.name!r} ({describe_callable(handle.fn)}) is registered twice with "
                f"different options: {before} and {after}"
            )
        return (
            f"two functions are registered as {handle.name!r}: "
            f"{describe_callable(existing.fn)} and {describe_callable(handle.fn)}; "
            "give one another name with name="
        )

    def add(self, handle: Task[Any, Any]) -> Task[Any, Any]:
        """Register a task handle.

        Returns:
            The handle registered under its name (the existing one when it is the same).

        Raises:
            ConfigurationError: When another function (or other options) has the name.
        """
        problem = self._conflict(handle)
        if problem is not None:
            raise ConfigurationError(problem)
        return self._tasks.setdefault(handle.name, handle)

    def add_cron_job(self, cron_job: CronJob) -> CronJob:
        """Register a cron job (and its function, when it is a task handle).

        Raises:
            ConfigurationError: When its function's name is taken by another function.
        """
        if isinstance(cron_job.function, Task):
            self.add(cron_job.function)
        if not any(cron_job is known for known in self._cron_jobs):
            self._cron_jobs.append(cron_job)
        return cron_job

    @overload
    def task(self, fn: Callable[Concatenate[Any, P], Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[Concatenate[Any, P], R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        /,
        *,
        name: str | None = None,
        timeout: int | None = None,
        heartbeat: int | None = None,
        retries: int | None = None,
        ttl: int | None = None,
        retry_delay: float | None = None,
        retry_backoff: bool | float | None = None,
        priority: int | None = None,
        process: bool | None = None,
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        process: bool | None = None,
        **options: Any,
    ) -> Any:
        """Like :func:`task`, and register the handle here.

        Raises:
            ConfigurationError: When another function is registered under the name.
        """

        def register(target: Callable[..., Any]) -> Task[Any, Any]:
            return self.add(as_task(target, name, options, process))

        return register(fn) if fn is not None else register

    def scheduled_task(
        self,
        cron: str,
        *,
        timezone: str | tzinfo | None = None,
        name: str | None = None,
        unique: bool = True,
        kwargs: dict[str, Any] | None = None,
        timeout: int | None = None,
        heartbeat: int | None = None,
        retries: int | None = None,
        ttl: int | None = None,
        retry_delay: float | None = None,
        retry_backoff: bool | float | None = None,
        process: bool | None = None,
    ) -> TaskDecorator:
        """Register a task and a :class:`~conveyor.cron.CronJob` running it on ``cron``.

        Stack several to run one task on several schedules. On a plain function the job
        options apply to the task as well; on a task handle, only to the cron runs.

        Args:
            cron: The expression (5 fields, 6 with seconds last, or an alias).
            timezone: The zone of the expression; the worker's ``cron_tz`` by default.
            name: The task's name; the function's ``__name__`` by default.
            unique: Skip a slot while the previous run is queued or active.
            kwargs: Arguments of each run.
            timeout: Seconds a run may take.
            heartbeat: Seconds within which a run must report liveness.
            retries: The maximum attempts of a run.
            ttl: Seconds a finished run is kept.
            retry_delay: Seconds before a retry.
            retry_backoff: Exponential backoff: True or a cap in seconds.
            process: Run the (sync) task in a child process (see :func:`task`); on a
                task handle, the handle's own setting is kept.

        Raises:
            CronExpressionError: At decoration, when ``cron`` is malformed or never fires.
            ConfigurationError: When the name is taken or the zone is unknown.
        """
        CronSchedule(cron, timezone)  # fail at the decorator's call, before any registration
        options: dict[str, Any] = {
            "timeout": timeout,
            "heartbeat": heartbeat,
            "retries": retries,
            "ttl": ttl,
            "retry_delay": retry_delay,
            "retry_backoff": retry_backoff,
        }

        def register(target: Callable[..., Any]) -> Task[Any, Any]:
            if isinstance(target, Task):
                handle = as_task(target, name, {})
            else:
                handle = as_task(target, name, options, process)
            cron_job = CronJob(handle, cron, unique=unique, kwargs=kwargs, tz=timezone, **options)
            self.add(handle)
            self.add_cron_job(cron_job)
            return self._tasks[handle.name]

        return cast(TaskDecorator, register)

    def include(self, *others: Registry) -> None:
        """Add the tasks and cron jobs of other registries (from other modules).

        Nothing is added when a name conflicts.

        Raises:
            ConfigurationError: When two different functions share a name.
        """
        staged = Registry()
        staged._tasks = dict(self._tasks)
        for other in others:
            for handle in other.functions:
                staged.add(handle)
        for other in others:
            for cron_job in other.cron_jobs:
                staged.add_cron_job(cron_job)
        self._tasks = staged._tasks
        for cron_job in staged.cron_jobs:
            if not any(cron_job is known for known in self._cron_jobs):
                self._cron_jobs.append(cron_job)


__all__ = ["Registry"]
