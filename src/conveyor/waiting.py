"""Waiting for jobs: the loops behind ``Queue.wait``, ``refresh`` and ``listen``.

Each loop reads the jobs, then waits for the backend's notification that one of them
changed. The wait is cut into slices of at most :data:`MAX_WAIT_SLICE` seconds, so that a
notification lost to a dropped connection costs at most one slice, never the whole wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.errors import JobNotFoundError
from conveyor.job import TERMINAL_STATUSES, Job, Status

if TYPE_CHECKING:
    from conveyor.queue import Queue

ListenCallback = Callable[[str, Status], Awaitable[Any] | Any]

#: The longest single wait between two reads.
MAX_WAIT_SLICE = 1.0


async def wait_for_jobs(queue: Queue, keys: Sequence[str], timeout: float | None) -> list[Job]:
    """Wait until every job in ``keys`` is finished and return them, in order.

    Raises:
        TimeoutError: When they did not all finish in time.
        JobNotFoundError: When a job does not exist (expired or never stored).
    """
    deadline = time.monotonic() + timeout if timeout else None
    pending = list(dict.fromkeys(keys))
    done: dict[str, Job] = {}
    while True:
        rows = await queue.backend.get(pending)
        for key, row in zip(pending, rows, strict=True):
            if row is None:
                raise JobNotFoundError(key, queue.name)
            if Status(row.status) in TERMINAL_STATUSES:
                job = queue.deserialize(row)
                assert job is not None
                done[key] = job
        pending = [k for k in pending if k not in done]
        if not pending:
            return [done[k] for k in keys]
        remaining = MAX_WAIT_SLICE
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"jobs {pending[:5]} did not finish within {timeout}s")
            remaining = min(remaining, left)
        await queue.backend.wait_for_finish(pending, remaining)


async def listen(
    queue: Queue, job_keys: Sequence[str], callback: ListenCallback, timeout: float | None
) -> None:
    """Call ``callback(key, status)`` on each change of the jobs until it returns truthy.

    Also returns when every job has finished, or after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout if timeout else None
    seen: dict[str, tuple[str, bytes | str]] = {}
    while True:
        rows = await queue.backend.get(list(job_keys))
        finished = 0
        for key, row in zip(job_keys, rows, strict=True):
            if row is None:
                continue
            state = (row.status, row.payload)
            if seen.get(key) != state:
                seen[key] = state
                result = callback(key, Status(row.status))
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
            finished += Status(row.status) in TERMINAL_STATUSES
        if finished == len(job_keys):
            return
        left = MAX_WAIT_SLICE
        if deadline is not None:
            left = min(left, deadline - time.monotonic())
            if left <= 0:
                return
        await queue.backend.wait_for_finish(list(job_keys), left)
