"""Run history retention: runs and their logs outlive a job's ``ttl``, for a retention period.

A finished job's row is deleted after its ``ttl`` (10 minutes by default), but its run
records and captured log lines stay, so the console can show what happened last week.
They are kept for a retention period (7 days by default) and then deleted by a daily cron
job, :func:`retention_cron_job`, which a worker runs like any other cron job: each slot is
enqueued once however many workers there are. It deletes in batches of
:data:`PURGE_BATCH` runs, one backend call each, so no single statement or script holds
the storage for long, and pauses after each batch for as long as the batch took, so that
the workers' claims and finishes get the storage between batches (on SQLite a writer that
waits for the write lock retries at growing intervals, and a purge that took the lock
again at once kept a claim waiting 0.8 s).

Usage without any worker support::

    Worker(queue, functions, cron_jobs=[*my_cron_jobs, retention_cron_job(3 * 86400)])
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from conveyor.backends.base import Backend
from conveyor.cron import CronJob
from conveyor.errors import ConfigurationError

logger = logging.getLogger("conveyor.retention")

#: Runs are kept this many seconds by default.
DEFAULT_RETENTION_S = 7 * 86400
#: The purge runs daily at 03:00 (in the worker's ``cron_tz``, UTC by default).
DEFAULT_RETENTION_CRON = "0 3 * * *"
#: Runs deleted per backend call: a batch holds SQLite's write lock, or the Redis server,
#: while it runs (a batch of 1,000 runs took 106 ms at the median on SQLite with a million
#: runs stored, one of 250 took 13 ms, on the project's loaded benchmark machine).
PURGE_BATCH = 250
#: Seconds the purge job may run; a backlog left over is deleted the next day.
PURGE_TIMEOUT_S = 3600


async def purge_runs_older_than(
    backend: Backend,
    older_than_s: float,
    *,
    now: float | None = None,
    batch: int = PURGE_BATCH,
    max_runs: int | None = None,
) -> int:
    """Delete finished runs that started more than ``older_than_s`` ago, with their logs.

    Runs still running are never deleted. Deletes in batches of ``batch`` until a batch
    comes back short (nothing older is left) or ``max_runs`` were deleted, and waits after
    each batch for as long as it took: the purge has the storage at most half the time.

    Args:
        backend: The queue's backend.
        older_than_s: The age in seconds; 0 deletes every finished run.
        now: The current time (epoch seconds); the clock by default.
        batch: Runs deleted per backend call.
        max_runs: Stop after about this many (a multiple of ``batch`` may be exceeded by
            less than one batch); None for no limit.

    Returns:
        How many runs were deleted.

    Raises:
        ValueError: For a negative age or a batch below 1.
    """
    if older_than_s < 0:
        raise ValueError(f"older_than_s must be 0 or more, got {older_than_s}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    # +1: a run that started within the cutoff's millisecond is old enough.
    before_ms = int(((time.time() if now is None else now) - older_than_s) * 1000) + 1
    deleted = 0
    while True:
        started = time.monotonic()
        count = await backend.purge_runs(before_ms, batch)
        deleted += count
        if count < batch or (max_runs is not None and deleted >= max_runs):
            return deleted
        await asyncio.sleep(time.monotonic() - started)


async def purge_run_history(
    ctx: dict[str, Any], *, retention_s: float = DEFAULT_RETENTION_S
) -> int:
    """Delete runs (and their logs) older than the retention period from this queue.

    The task behind :func:`retention_cron_job`; it can also be enqueued by hand.

    Args:
        ctx: The worker's context (its ``queue`` is purged).
        retention_s: Runs that started longer ago than this many seconds are deleted.

    Returns:
        How many runs were deleted.
    """
    queue = ctx["queue"]
    deleted = await purge_runs_older_than(queue.backend, retention_s)
    logger.info(
        "retention: deleted %d runs older than %.0f s from queue %r",
        deleted,
        retention_s,
        queue.name,
    )
    return deleted


def retention_cron_job(
    retention_s: float = DEFAULT_RETENTION_S,
    cron: str = DEFAULT_RETENTION_CRON,
    tz: str | None = None,
) -> CronJob:
    """The cron job that enforces the retention period.

    Args:
        retention_s: Seconds runs are kept (7 days by default).
        cron: When the purge runs (daily at 03:00 by default).
        tz: The zone of ``cron``; the worker's ``cron_tz`` when None.

    Returns:
        A :class:`~conveyor.cron.CronJob` running :func:`purge_run_history`, registered as
        ``purge_run_history``.

    Raises:
        ConfigurationError: For a retention period that is not positive.
        CronExpressionError: For a malformed ``cron``.
    """
    if not retention_s > 0:
        raise ConfigurationError(
            f"the run retention period must be a positive number of seconds, got {retention_s!r}"
        )
    return CronJob(
        purge_run_history,
        cron=cron,
        kwargs={"retention_s": retention_s},
        tz=tz,
        timeout=PURGE_TIMEOUT_S,
        unique=True,
    )


def with_retention(cron_jobs: Iterable[CronJob], retention_s: float | None) -> list[CronJob]:
    """``cron_jobs`` plus the retention purge, unless ``retention_s`` is None.

    Used by the worker and by the admin service alike, so both know the purge task.
    """
    jobs = list(cron_jobs)
    if retention_s is not None:
        jobs.append(retention_cron_job(retention_s))
    return jobs


__all__ = [
    "DEFAULT_RETENTION_CRON",
    "DEFAULT_RETENTION_S",
    "PURGE_BATCH",
    "purge_run_history",
    "purge_runs_older_than",
    "retention_cron_job",
    "with_retention",
]
