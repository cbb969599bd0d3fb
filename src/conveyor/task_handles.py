"""Typed task handles: :class:`Task` and the :func:`task` decorator.

A handle wraps a task function ``fn(ctx, *, ...)``; its ``enqueue`` and ``apply`` take the
function's own arguments, checked by mypy (examples in :mod:`conveyor.tasks`, where users
import these names from). :class:`~conveyor.registry.Registry`, which collects handles,
builds on this module.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
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


def describe_callable(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function, for error messages."""
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
            f"task {name!r} ({describe_callable(fn)}) must take the context as its first "
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
        process: Run each attempt of this sync function in a child process, which a
            timeout, an abort or a shutdown terminates (a thread cannot be stopped). Its
            arguments and result must pickle, it must be defined at the top level of a
            module, and it receives a reduced context (see
            :func:`conveyor.worker.processes.child_context`).

    Attributes:
        fn: The wrapped function.
        name: The registered name.
        job_options: The preset job fields.
        process: Whether the worker runs it in a child process.

    Raises:
        ConfigurationError: When ``fn`` is not callable, takes no context parameter, an
            option is not a job field, or ``process=True`` is given an ``async def``.

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
        process: bool = False,
    ) -> None: ...

    @overload
    def __init__(
        self: Task[P, R],
        fn: Callable[Concatenate[Any, P], R],
        *,
        name: str | None = None,
        job_options: Mapping[str, Any] | None = None,
        process: bool = False,
    ) -> None: ...

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        job_options: Mapping[str, Any] | None = None,
        process: bool = False,
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
        if process and (
            inspect.iscoroutinefunction(fn)
            or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004
        ):
            raise ConfigurationError(
                f"task {resolved!r} ({describe_callable(fn)}): process=True runs a plain def "
                "in a child process; this function is async"
            )
        # First, so that attributes copied from the function never shadow the handle's.
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = resolved
        self.job_options: dict[str, Any] = options
        self.process = bool(process)
        self._signature = _signature(fn, resolved)

    def __repr__(self) -> str:
        where = ", process=True" if self.process else ""
        return f"Task<name={self.name!r}, fn={describe_callable(self.fn)}{where}>"

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


def as_task(
    fn: Any, name: str | None, options: Mapping[str, Any], process: bool | None = None
) -> Task[Any, Any]:
    """A handle for ``fn`` (a function or a handle) with this name and these job options.

    A handle given with no name, no options and no ``process`` is returned as it is; a
    handle keeps its own ``process`` unless one is given.
    """
    if isinstance(fn, Task):
        if name is None and process is None and not any(v is not None for v in options.values()):
            return fn
        return Task(
            fn.fn,
            name=name or fn.name,
            job_options={**fn.job_options, **options},
            process=fn.process if process is None else process,
        )
    return Task(fn, name=name, job_options=options, process=bool(process))


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
    process: bool | None = None,
) -> TaskDecorator: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    process: bool | None = None,
    **options: Any,
) -> Any:
    """Turn a function into a :class:`Task`, bare (``@task``) or with options.

    Registers nothing: pass the handle to a worker, or use :meth:`Registry.task`.

    Args:
        fn: The function, when used bare.
        name: The registered name; the function's ``__name__`` by default.
        process: Run each attempt of this sync function in a child process that a
            timeout, an abort or a shutdown can stop (see :class:`Task`).
        **options: Job options of every job: ``timeout``, ``heartbeat``, ``retries``,
            ``ttl``, ``retry_delay``, ``retry_backoff``, ``priority``.

    Returns:
        The handle, or a decorator that makes one.
    """
    if fn is not None:
        return as_task(fn, name, options, process)
    return functools.partial(as_task, name=name, options=options, process=process)


__all__ = ["JOB_OPTIONS", "Task", "TaskDecorator", "task"]
