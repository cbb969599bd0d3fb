"""Running one job: hooks, the function (async, in a thread, or in a child process), timeout,
cancellation.

The executor decides nothing about storage: it returns an :class:`Outcome`, and the worker
turns it into a transition through the queue's policy.

How an attempt stops (a timeout, an abort, a shutdown) depends on how it runs:

* an ``async def`` function is cancelled: ``CancelledError`` is raised at its next ``await``;
* a sync ``def`` function runs in a thread of the worker's :class:`ThreadPool`, which cannot
  be stopped: the attempt ends when the function returns, however late (see
  :mod:`conveyor.worker.threads`);
* a sync function registered with ``process=True`` runs in a child process, which is
  terminated, then killed (see :mod:`conveyor.worker.processes`).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import functools
import inspect
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.job import Job
from conveyor.worker.processes import (
    ArgumentsNotPicklableError,
    ChildError,
    InProcess,
    run_in_process,
)
from conveyor.worker.threads import ThreadPool

Hook = Callable[[dict[str, Any]], Any]

#: The job running in the current task (and in threads started with a copied context).
current_job: contextvars.ContextVar[Job | None] = contextvars.ContextVar(
    "conveyor_current_job", default=None
)


class CancelReason(str, enum.Enum):
    """Why the worker cancelled a running job."""

    ABORT = "abort"
    SHUTDOWN = "shutdown"
    HEARTBEAT = "heartbeat"
    #: The job's lease was taken over by another worker: nothing more is written about it.
    LOST = "lost"


@dataclasses.dataclass(slots=True)
class Outcome:
    """How an attempt ended.

    Attributes:
        ok: The function returned.
        result: Its return value.
        error: A message for a failed attempt.
        traceback: The formatted traceback of a failed attempt.
        retry_allowed: False for errors no retry can fix (an unknown function).
        cancelled: Why the worker cancelled it, if it did.
    """

    ok: bool
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    retry_allowed: bool = True
    cancelled: CancelReason | None = None


async def call_hooks(hooks: Sequence[Hook], ctx: dict[str, Any]) -> None:
    """Call each hook with ``ctx``; a hook may be sync or async."""
    for hook in hooks:
        result = hook(ctx)
        if inspect.isawaitable(result):
            await result


async def call_function(
    fn: Callable[..., Any],
    ctx: dict[str, Any],
    job: Job,
    threads: ThreadPool,
    kill_after_s: float = 0.5,
) -> Any:
    """Call a task function: async directly, sync in a thread of ``threads`` with the context
    copied, ``process=True`` functions in a child process.

    Args:
        fn: The function (an :class:`~conveyor.worker.processes.InProcess` for a
            process-run one).
        ctx: The context passed to it.
        job: The job; its ``kwargs`` are passed.
        threads: The worker's threads.
        kill_after_s: Seconds between a stopped child's SIGTERM and its SIGKILL.
    """
    kwargs = job.kwargs or {}
    if isinstance(fn, InProcess):
        return await run_in_process(fn, job, threads, kill_after_s)
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    ):
        return await fn(ctx, **kwargs)
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, ctx, **kwargs)
    result = await threads.run(job.key, job.function, call)
    if inspect.isawaitable(result):
        result = await result
    return result


async def run_attempt(
    fn: Callable[..., Any] | None,
    ctx: dict[str, Any],
    job: Job,
    unknown_error: Callable[[], Exception],
    threads: ThreadPool,
    kill_after_s: float = 0.5,
) -> Outcome:
    """Run one attempt of ``job`` with its timeout.

    A sync attempt that times out while its thread runs on returns (or, when cancelled,
    raises) only once the thread has ended.

    Args:
        fn: The task function, or None when the job names an unknown function.
        ctx: The context passed to the function.
        job: The job; its ``kwargs`` are passed.
        unknown_error: Builds the error for an unknown function.
        threads: The worker's threads, for sync functions.
        kill_after_s: Seconds between a stopped child's SIGTERM and its SIGKILL.

    Returns:
        The outcome; cancellation by the worker propagates as ``CancelledError``.
    """
    if fn is None:
        exc = unknown_error()
        return Outcome(ok=False, error=str(exc), retry_allowed=False)
    token = current_job.set(job)
    try:
        timeout = float(job.timeout) if job.timeout else None
        async with asyncio.timeout(timeout):
            result = await call_function(fn, ctx, job, threads, kill_after_s)
        return Outcome(ok=True, result=result)
    except TimeoutError as exc:
        if timeout is not None and _is_job_timeout(exc):
            ctx["exception"] = exc
            return Outcome(ok=False, error=f"job timed out after {job.timeout}s")
        return _failure(ctx, exc)
    except asyncio.CancelledError:
        raise
    except ArgumentsNotPicklableError as exc:
        ctx["exception"] = exc
        return Outcome(ok=False, error=str(exc), retry_allowed=False)
    except ChildError as exc:
        ctx["exception"] = exc
        return Outcome(ok=False, error=str(exc), traceback=exc.traceback)
    except Exception as exc:
        return _failure(ctx, exc)
    finally:
        current_job.reset(token)


def _is_job_timeout(exc: TimeoutError) -> bool:
    # asyncio.timeout raises TimeoutError from a CancelledError; a TimeoutError the task
    # raised itself has no such cause.
    return isinstance(exc.__cause__, asyncio.CancelledError)


def _failure(ctx: dict[str, Any], exc: BaseException) -> Outcome:
    ctx["exception"] = exc
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Outcome(
        ok=False,
        error=message,
        traceback="".join(traceback.format_exception(exc)),
    )
