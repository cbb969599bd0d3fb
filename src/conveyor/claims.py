"""Claiming jobs and recovering dead workers' jobs (``Queue.dequeue``, ``Queue.sweep``).

A claim takes a lease on a job. A job whose lease expired (its worker died) is recovered:
queued again or failed, as the queue's ``recovery_transition`` decides.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.job import Job
    from conveyor.queue import Queue


async def dequeue(queue: Queue, timeout: float, worker_id: str, lease_s: float) -> Job | None:
    """Claim one job of ``queue`` for ``worker_id``, waiting up to ``timeout`` seconds.

    Returns:
        The job, or None when none was claimable in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        rows = await queue.backend.claim(worker_id, 1, lease_s, time.time())
        if rows:
            return queue.deserialize(rows[0])
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await queue.backend.wait_for_work(left)


async def sweep(queue: Queue, lock: int, worker_id: str) -> list[str]:
    """Recover the jobs of ``queue`` whose lease expired, and delete expired finished jobs.

    Returns:
        The keys of the recovered jobs.
    """
    now = time.time()
    rows = await queue.backend.recover(worker_id, 100, max(float(lock), 5.0), now)
    transitions = []
    for row in rows:
        job = queue.deserialize(row)
        if job is None:
            continue
        transitions.append(queue.recovery_transition(job))
    if transitions:
        await queue.backend.finish(transitions)
    await queue.backend.expire(now, 1000)
    return [t.key for t in transitions]


__all__ = ["dequeue", "sweep"]
