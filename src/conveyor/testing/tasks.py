"""Task functions the conformance suite runs, in-process and in worker subprocesses."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from conveyor.observability.logs import LogSink
from conveyor.task_handles import Task, task

logger = logging.getLogger("conveyor.testing.tasks")


async def echo(ctx: dict[str, Any], *, value: Any = None) -> Any:
    """Return ``value``."""
    return value


async def add(ctx: dict[str, Any], *, a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b


async def sleep(ctx: dict[str, Any], *, seconds: float, value: Any = None) -> Any:
    """Sleep, then return ``value``."""
    await asyncio.sleep(seconds)
    return value


async def fail(ctx: dict[str, Any], *, message: str = "boom") -> None:
    """Always raise ``ValueError(message)``."""
    raise ValueError(message)


async def fail_until(ctx: dict[str, Any], *, succeed_on: int) -> int:
    """Fail until the job's attempt number reaches ``succeed_on``."""
    attempts: int = ctx["job"].attempts
    if attempts < succeed_on:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


async def progress(ctx: dict[str, Any], *, steps: int, pause: float = 0.05) -> str:
    """Report progress and meta in ``steps`` updates."""
    job = ctx["job"]
    for step in range(1, steps + 1):
        await job.update(progress=step / steps, meta={**job.meta, "step": step})
        await asyncio.sleep(pause)
    return "done"


async def set_status(
    ctx: dict[str, Any], *, to: str, reason: str | None = None, value: Any = None
) -> Any:
    """End the attempt itself with ``job.update(status=to, error=reason)``, then return
    ``value`` (which the worker must not store over the task's own status)."""
    await ctx["job"].update(status=to, error=reason)
    return value


async def log_lines(ctx: dict[str, Any], *, tag: str, count: int = 3) -> str:
    """Log ``count`` lines from async code and from a thread, each tagged."""
    for i in range(count):
        logger.info("%s async %d", tag, i)
        await asyncio.sleep(0)

    def in_thread() -> None:
        logger.info("%s thread", tag)

    await asyncio.to_thread(in_thread)
    return tag


def sync_echo(ctx: dict[str, Any], *, value: Any = None) -> dict[str, Any]:
    """A sync task: runs in a thread; reports which thread."""
    return {"value": value, "main_thread": threading.current_thread() is threading.main_thread()}


def sync_sleep(
    ctx: dict[str, Any],
    *,
    seconds: float,
    quick_from: int = 0,
    pid_dir: str | None = None,
    ignore_sigterm: bool = False,
    value: Any = None,
) -> dict[str, Any]:
    """A blocking sync task: sleeps ``seconds`` (from attempt ``quick_from`` on, it does not).

    With ``pid_dir`` it first writes its process id to the file ``<pid_dir>/<attempt>``;
    with ``ignore_sigterm`` (in a child process only) it ignores SIGTERM.
    """
    attempt: int = ctx["job"].attempts
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if pid_dir is not None:
        target = Path(pid_dir, str(attempt))
        partial = target.with_suffix(".partial")
        partial.write_text(str(os.getpid()))
        partial.replace(target)  # readers never see half a number
    if not quick_from or attempt < quick_from:
        time.sleep(seconds)
    return {"value": value, "attempt": attempt, "pid": os.getpid()}


def process_context(ctx: dict[str, Any]) -> dict[str, Any]:
    """Report what a process-run task receives: its context's keys and its process."""
    job = ctx["job"]
    return {
        "keys": sorted(ctx),
        "key": job.key,
        "attempts": job.attempts,
        "kwargs": job.kwargs,
        "queue_name": ctx["queue_name"],
        "worker_id": ctx["worker_id"],
        "pid": os.getpid(),
    }


def sync_fail(ctx: dict[str, Any], *, message: str = "boom") -> None:
    """A sync task that always raises ``ValueError(message)``."""
    raise ValueError(message)


class Incomparable:
    """A value whose ``==`` and ``!=`` raise, as a numpy array's or a DataFrame's can, and
    that no serializer stores."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value of an Incomparable is ambiguous")

    def __ne__(self, other: object) -> bool:
        raise ValueError("the truth value of an Incomparable is ambiguous")

    __hash__ = object.__hash__


async def unstorable(ctx: dict[str, Any], *, where: str) -> Any:
    """Leave a value no backend can store: ``where`` is ``result``, ``meta``, ``log`` (a
    line with a lone surrogate and a NUL, as a non-UTF-8 file name gives) or ``error``."""
    name = b"report-\xff.csv".decode("utf-8", "surrogateescape")
    if where == "result":
        return Incomparable()
    if where == "meta":
        ctx["job"].meta["handle"] = Incomparable()
        return "meta"
    if where == "log":
        # Only to Conveyor's capture: a test runner's own capture may not carry a lone
        # surrogate between its processes (pytest-xdist cannot).
        record = logger.makeRecord(
            logger.name, logging.WARNING, __file__, 0, "cannot open %s\x00", (name,), None
        )
        for handler in logging.getLogger().handlers:
            if isinstance(handler, LogSink):
                handler.handle(record)
        return "logged"
    raise OSError(f"cannot open {name}")


async def record(ctx: dict[str, Any], *, path: str, seconds: float) -> str:
    """Run for ``seconds`` and append one line to ``path`` saying when this attempt ran
    (key, attempt, pid, start, end, and whether it reached its end): the chaos benchmark
    reads it to find jobs that ran twice at once."""
    job = ctx["job"]
    start = time.time()
    finished = False
    try:
        await asyncio.sleep(seconds)
        finished = True
        return str(job.key)
    finally:
        line = json.dumps(
            {
                "key": job.key,
                "attempt": job.attempts,
                "pid": os.getpid(),
                "start": start,
                "end": time.time(),
                "finished": finished,
            }
        )
        with open(path, "a", encoding="utf-8") as out:  # noqa: ASYNC230 - one small line
            out.write(line + "\n")


#: The sync tasks above, run in child processes (``process=True``), under their own names.
PROCESS_FUNCTIONS: list[Task[Any, Any]] = [
    task(name="process_sleep", process=True)(sync_sleep),
    task(process=True)(process_context),
    task(name="process_fail", process=True)(sync_fail),
]

TEST_FUNCTIONS = [
    echo,
    add,
    sleep,
    fail,
    fail_until,
    progress,
    set_status,
    log_lines,
    sync_echo,
    unstorable,
    record,
]
