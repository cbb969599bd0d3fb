"""Cron: each slot of each cron job is enqueued exactly once, however many workers run.

Every tick, a worker looks at each cron job's next slot. When the slot is less than a tick
(plus a second) away, it enqueues the job with ``scheduled`` at the slot and a ``once`` mark
naming the slot: the backend inserts the job and the mark in one atomic step, so other
workers that try the same slot are refused. Missed slots (no worker was running) are not
caught up, so the queue is never flooded. With ``unique=True`` the job's key is the cron
job's name: while one run is still queued or active, the next slot is not enqueued.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.errors import ConfigurationError
from conveyor.job import Job
from conveyor.queue import Queue

logger = logging.getLogger("conveyor.cron")


def cron_ids(cron_jobs: Sequence[Any], default_tz: tzinfo | str | None) -> list[str]:
    """The id of each cron job, of which its job keys and slot marks are made.

    A function's only cron job has the function's name as its id (the key it always had).
    Each of several cron jobs of one function has ``name#digest``, the digest being the
    first 16 hex digits of the SHA-256 of :meth:`conveyor.cron.CronJob.identity`: every
    worker with the same cron jobs computes the same ids.

    Args:
        cron_jobs: :class:`conveyor.cron.CronJob` definitions.
        default_tz: The worker's ``cron_tz``.

    Returns:
        One id per cron job, in order.

    Raises:
        ConfigurationError: When two cron jobs of one function have the same expression,
            zone and kwargs (each slot would run twice), or a kwargs value has no stable
            text.
    """
    by_name: dict[str, list[int]] = {}
    for index, cron in enumerate(cron_jobs):
        by_name.setdefault(cron.name, []).append(index)
    ids = [str(cron.name) for cron in cron_jobs]
    for name, indexes in by_name.items():
        if len(indexes) == 1:
            continue
        seen: set[str] = set()
        for index in indexes:
            cron = cron_jobs[index]
            identity = cron.identity(default_tz)
            if identity in seen:
                raise ConfigurationError(
                    f"two cron jobs of function {name!r} are identical (cron {cron.cron!r}, "
                    f"kwargs {cron.kwargs or {}!r}, tz {cron.schedule(default_tz).tz!s}): "
                    "each slot would run twice; remove one, or give each its own kwargs"
                )
            seen.add(identity)
            ids[index] = f"{name}#{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
    return ids


class CronScheduler:
    """Enqueues due slots of cron jobs.

    Args:
        queue: Where cron jobs are enqueued.
        cron_jobs: :class:`conveyor.cron.CronJob` definitions.
        default_tz: The worker's ``cron_tz`` (UTC when None).
        tick: Seconds between ticks.
    """

    def __init__(
        self,
        queue: Queue,
        cron_jobs: Sequence[Any],
        default_tz: tzinfo | str | None,
        tick: float,
    ) -> None:
        self.queue = queue
        self.cron_jobs = list(cron_jobs)
        tz = default_tz or "UTC"
        self.default_tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.tick_s = tick
        self._schedules = [cron.schedule(self.default_tz) for cron in self.cron_jobs]
        self.ids = cron_ids(self.cron_jobs, self.default_tz)

    def next_slots(self, now: float) -> list[tuple[Any, float]]:
        """Each cron job with its next slot after ``now``."""
        return [
            (cron, schedule.next_after(now))
            for cron, schedule in zip(self.cron_jobs, self._schedules, strict=True)
        ]

    async def tick(self, now: float | None = None) -> list[Job]:
        """Enqueue the slots that are due within the next tick.

        Args:
            now: The current time in epoch seconds (``time.time()`` when None).

        Returns:
            The jobs this worker enqueued (other workers' are not included).
        """
        now = time.time() if now is None else now
        horizon = self.tick_s + 1.0
        jobs = []
        for cron_id, (cron, slot) in zip(self.ids, self.next_slots(now - 0.001), strict=True):
            if slot - now > horizon:
                continue
            job = self._job_for(cron_id, cron, slot)
            enqueued = await self.queue.enqueue(job)
            if enqueued is not None:
                logger.debug("cron %s enqueued for %s", cron.name, slot)
                jobs.append(enqueued)
        return jobs

    def _job_for(self, cron_id: str, cron: Any, slot: float) -> Job:
        slot_ms = int(slot * 1000)
        kwargs: dict[str, Any] = dict(cron.job_kwargs())
        key = f"cron:{cron_id}" if cron.unique else f"cron:{cron_id}:{slot_ms}"
        meta = {
            "trigger": "cron",
            "cron": cron.cron,
            "scheduled_for": slot,
            "once": f"cron:{cron_id}:{slot_ms}",
            "once_ttl": max(3600.0, self.tick_s * 10),
        }
        return Job(
            function=cron.name,
            kwargs=dict(cron.kwargs or {}) or None,
            key=key,
            scheduled=slot,
            meta=meta,
            **kwargs,
        )
