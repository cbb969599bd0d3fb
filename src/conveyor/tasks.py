"""Typed task handles and registries of tasks.

A :class:`Task` wraps a task function ``fn(ctx, *, ...)``. Its ``enqueue`` and ``apply`` take
the function's own arguments, and mypy checks them against the function's signature::

    @task(timeout=30)
    async def send_email(ctx: Context, *, to: str, subject: str) -> None: ...

    await send_email.enqueue(queue, to="a@example.com", subject="Hi")   # checked
    await send_email.options(key="welcome-1").enqueue(queue, to="a@example.com", subject="Hi")

A :class:`Registry` collects tasks and scheduled tasks from many modules, without any
module-level state: each application creates its own and hands it to its worker.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from datetime import tzinfo
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

from conveyor.cron import CronJob, CronSchedule
from conveyor.errors import ArgumentsError, ConfigurationError, JobError
from conveyor.job import Job, Status

if TYPE_CHECKING:
    from conveyor.queue import Queue
    from conveyor.types import Context

P = ParamSpec("P")
R = TypeVar("R")

#: Job fields a handle may preset: the keyword arguments of :meth:`Task.options`.
JOB_OPTIONS = frozenset(
    {
        "key",
        "scheduled",
        "timeout",
        "heartbeat",
        "retries",
        "ttl",
        "retry_delay",
        "retry_backoff",
        "priority",
        "group_key",
        "meta",
    }
)
# Options that describe every job of a task; ``key``, ``scheduled`` and ``meta`` belong to
# one job and are only set through :meth:`Task.options`.
_TASK_OPTIONS = ("timeout", "heartbeat", "retries", "ttl", "retry_delay", "retry_backoff")


def _describe(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{qualname}"


def _signature(fn: Callable[..., Any], name: str) -> inspect.Signature | None:
    """The function's signature, checked to take a context first; None when unknown."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # some builtins and C callables have none; arguments go unchecked
    try:
        signature.bind_partial(None)
    except TypeError as exc:
        raise ConfigurationError(
            f"task {name!r} ({_describe(fn)}) must take the context as its first "
            f"positional parameter: fn(ctx, *, ...)"
        ) from exc
    return signature


class Task(Generic[P, R]):
    """A task function with a name and job options; enqueue it with checked arguments.

    Args:
        fn: ``async def fn(ctx, *, ...)`` (or a sync function, which the worker runs in a
            thread). The first parameter receives the worker's context.
        name: The name jobs are stored under; ``fn.__name__`` by default.
        job_options: Job fields every job of this handle gets (see :data:`JOB_OPTIONS`).

    Attributes:
        fn: The wrapped function.
        name: The registered name.
        job_options: The preset job fields.

    Raises:
        ConfigurationError: When ``fn`` is not callable, takes no context parameter, or an
            option is not a job field.

    A function with a ``**kwargs`` parameter must take its context positional-only,
    ``fn(ctx, /, **kwargs)``, for mypy to accept it (``Concatenate`` prepends a
    positional-only parameter, and ``ctx=`` could otherwise land in ``**kwargs``).
    """

    # Copied from the function by functools.update_wrapper.
    __name__: str
    __qualname__: str

    @overload
    def __init__(
        self: Task[P, R],
        fn: Callable[Concatenate[Any, P], Awaitable[R]],
        *,
        name: str | None = None,
        job_options: Mapping[str, Any] | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: Task[P, R],
        fn: Callable[Concatenate[Any, P], R],
        *,
        name: str | None = None,
        job_options: Mapping[str, Any] | None = None,
    ) -> None: ...

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        job_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"a task needs a callable, got {fn!r}")
        resolved = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(resolved, str) or not resolved:
            raise ConfigurationError(f"cannot tell the name of task {fn!r}; pass name=")
        options = {k: v for k, v in (job_options or {}).items() if v is not None}
        unknown = sorted(set(options) - JOB_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"task {resolved!r}: {', '.join(unknown)} not job options; "
                f"use {', '.join(sorted(JOB_OPTIONS))}"
            )
        # First, so that attributes copied from the function never shadow the handle's.
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = resolved
        self.job_options: dict[str, Any] = options
        self._signature = _signature(fn, resolved)

    def __repr__(self) -> str:
        return f"Task<name={self.name!r}, fn={_describe(self.fn)}>"

    def __call__(
        self, ctx: Context, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        """Call the function directly, outside any queue (for tests and composition).

        Returns an awaitable in every case: an async function's coroutine is awaited, and a
        sync function runs, in the calling thread, when the result is awaited.
        """
        return self._call(ctx, *args, **kwargs)

    async def _call(self, ctx: Context, /, *args: Any, **kwargs: Any) -> R:
        result = self.fn(ctx, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return cast(R, result)

    def options(
        self,
        *,
        key: str | None = None,
        scheduled: float | None = None,
        timeout: int | None = None,
        heartbeat: int | None = None,
        retries: int | None = None,
        ttl: int | None = None,
        retry_delay: float | None = None,
        retry_backoff: bool | float | None = None,
        priority: int | None = None,
        group_key: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Task[P, R]:
        """A copy of this handle whose jobs get these fields (on top of its own options).

        Args:
            key: The job key: an incomplete job with the same key blocks a new one.
            scheduled: Epoch seconds before which the job does not start.
            timeout: Seconds the job may run.
            heartbeat: Seconds within which a running job must report liveness.
            retries: The maximum number of attempts.
            ttl: Seconds a finished job is kept.
            retry_delay: Seconds before a retry.
            retry_backoff: Exponential backoff: True or a cap in seconds.
            priority: Lower runs first.
            group_key: At most one job of a group runs at a time.
            meta: Free-form data stored with the job.

        Returns:
            A new handle with the same function and name.
        """
        given = {
            "key": key,
            "scheduled": scheduled,
            "timeout": timeout,
            "heartbeat": heartbeat,
            "retries": retries,
            "ttl": ttl,
            "retry_delay": retry_delay,
            "retry_backoff": retry_backoff,
            "priority": priority,
            "group_key": group_key,
            "meta": meta,
        }
        merged = {**self.job_options, **{k: v for k, v in given.items() if v is not None}}
        bound = copy.copy(self)
        bound.job_options = merged
        return bound

    def arguments(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The job's keyword arguments for a call ``fn(ctx, *args, **kwargs)``.

        Positional arguments are turned into keywords by the function's signature, since
        the worker calls ``fn(ctx, **kwargs)``.

        Raises:
            ArgumentsError: When the arguments do not fit the signature.
        """
        if self._signature is None:
            if args:
                raise ArgumentsError(
                    self.name, {"*args": "pass keyword arguments; the signature is unknown"}
                )
            return dict(kwargs)
        try:
            bound = self._signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise ArgumentsError(self.name, {"arguments": str(exc)}) from exc
        out: dict[str, Any] = {}
        parameters = self._signature.parameters
        for index, (param_name, value) in enumerate(bound.arguments.items()):
            kind = parameters[param_name].kind
            if index == 0:
                continue  # the context
            if kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise ArgumentsError(
                        self.name, {param_name: "*args cannot be passed to a job; use keywords"}
                    )
            elif kind is inspect.Parameter.POSITIONAL_ONLY:
                raise ArgumentsError(
                    self.name, {param_name: "positional-only; a job passes keywords"}
                )
            else:
                out[param_name] = value
        return out

    def job(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """A :class:`Job` for this call, with the handle's job options (not yet enqueued).

        Raises:
            ArgumentsError: When the arguments do not fit the signature.
        """
        arguments = self.arguments(*args, **kwargs)
        return Job(function=self.name, kwargs=arguments or None, **self.job_options)

    async def enqueue(self, queue: Queue, /, *args: P.args, **kwargs: P.kwargs) -> Job | None:
        """Enqueue a job calling this task with these arguments.

        Argument names never clash with job fields: a task may take ``key`` or ``result``
        as parameters; job fields are set with :meth:`options`.

        Args:
            queue: The queue.
            *args: Positional arguments of the function (after the context).
            **kwargs: Keyword arguments of the function.

        Returns:
            The job, or None when an incomplete job with the same key exists.

        Raises:
            ArgumentsError: When the arguments do not fit the signature.
            SerializationError: When an argument cannot be serialized.
        """
        return await queue.enqueue(self.job(*args, **kwargs))

    async def apply(
        self, queue: Queue, /, timeout: float | None = None, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Enqueue a job and wait for its result.

        Args:
            queue: The queue.
            timeout: Seconds to wait for the result (None or 0: forever); the job's own
                timeout is set with :meth:`options`.
            *args: Positional arguments of the function (after the context).
            **kwargs: Keyword arguments of the function.

        Returns:
            The function's return value.

        Raises:
            JobError: When the job failed or was aborted.
            TimeoutError: When it did not finish in time.
        """
        job = self.job(*args, **kwargs)
        # An existing incomplete job with the same key is awaited just the same.
        await queue.enqueue(job)
        [done] = await queue.wait([job.key], timeout)
        if done.status != Status.COMPLETE:
            raise JobError(done)
        return cast(R, done.result)


class TaskDecorator(Protocol):
    """What ``@task(...)`` returns: turns a function into a :class:`Task`."""

    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], R], /) -> Task[P, R]: ...


def _as_task(fn: Any, name: str | None, options: Mapping[str, Any]) -> Task[Any, Any]:
    if isinstance(fn, Task):
        if name is None and not any(v is not None for v in options.values()):
            return fn
        return Task(fn.fn, name=name or fn.name, job_options={**fn.job_options, **options})
    return Task(fn, name=name, job_options=options)


@overload
def task(fn: Callable[Concatenate[Any, P], Awaitable[R]], /) -> Task[P, R]: ...


@overload
def task(fn: Callable[Concatenate[Any, P], R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    timeout: int | None = None,
    heartbeat: int | None = None,
    retries: int | None = None,
    ttl: int | None = None,
    retry_delay: float | None = None,
    retry_backoff: bool | float | None = None,
    priority: int | None = None,
) -> TaskDecorator: ...


def task(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
) -> Any:
    """Turn a function into a :class:`Task`, bare (``@task``) or with options.

    Registers nothing: pass the handle to a worker, or use :meth:`Registry.task`.

    Args:
        fn: The function, when used bare.
        name: The registered name; the function's ``__name__`` by default.
        **options: Job options of every job: ``timeout``, ``heartbeat``, ``retries``,
            ``ttl``, ``retry_delay``, ``retry_backoff``, ``priority``.

    Returns:
        The handle, or a decorator that makes one.
    """
    if fn is not None:
        return _as_task(fn, name, options)
    return functools.partial(_as_task, name=name, options=options)


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
        if existing.fn is handle.fn and existing.job_options == handle.job_options:
            return None
        if existing.fn is handle.fn:
            return (
                f"task {handle.name!r} ({_describe(handle.fn)}) is registered twice with "
                f"different options: {existing.job_options} and {handle.job_options}"
            )
        return (
            f"two functions are registered as {handle.name!r}: {_describe(existing.fn)} and "
            f"{_describe(handle.fn)}; give one another name with name="
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
    ) -> TaskDecorator: ...

    def task(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
    ) -> Any:
        """Like :func:`task`, and register the handle here.

        Raises:
            ConfigurationError: When another function is registered under the name.
        """

        def register(target: Callable[..., Any]) -> Task[Any, Any]:
            return self.add(_as_task(target, name, options))

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
            handle = _as_task(target, name, {} if isinstance(target, Task) else options)
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


__all__ = ["JOB_OPTIONS", "Registry", "Task", "TaskDecorator", "task"]
