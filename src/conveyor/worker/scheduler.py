"""Cron: each slot of each cron job is enqueued exactly once, however many workers run.

Every tick, a worker looks at each cron job's next slot. When the slot is less than a tick
(plus a second) away, it enqueues the job with ``scheduled`` at the slot and a ``once`` mark
naming the slot: the backend inserts the job and the mark in one atomic step, so other
workers that try the same slot are refused. Missed slots (no worker was running) are not
caught up, so the queue is never flooded. With ``unique=True`` the job's key is the cron
job's name: while one run is still queued or active, the next slot is not enqueued.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.job import Job
from conveyor.queue import Queue

logger = logging.getLogger("conveyor.cron")


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

    def next_slots(self, now: float) -> list[tuple[Any, float]]:
        """Each cron job with its next slot after ``now``."""
        return [
            (cron, schedule.next_after(now))
            for cron, schedule in zip(self.cron_jobs, self._schedules, strict=True)
        ]

    async def tick(self) -> list[Job]:
        """Enqueue the slots that are due within the next tick.

        Returns:
            The jobs this worker enqueued (other workers' are not included).
        """
        now = time.time()
        horizon = self.tick_s + 1.0
        jobs = []
        for cron, slot in self.next_slots(now - 0.001):
            if slot - now > horizon:
                continue
            job = self._job_for(cron, slot)
            enqueued = await self.queue.enqueue(job)
            if enqueued is not None:
                logger.debug("cron %s enqueued for %s", cron.name, slot)
                jobs.append(enqueued)
        return jobs

    def _job_for(self, cron: Any, slot: float) -> Job:
        slot_ms = int(slot * 1000)
        kwargs: dict[str, Any] = dict(cron.job_kwargs())
        key = f"cron:{cron.name}" if cron.unique else f"cron:{cron.name}:{slot_ms}"
        meta = {
            "trigger": "cron",
            "cron": cron.cron,
            "scheduled_for": slot,
            "once": f"cron:{cron.name}:{slot_ms}",
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
