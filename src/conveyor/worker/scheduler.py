"""Cron: each slot of each cron job is enqueued at most once, however many workers run.

Windows. A scheduler keeps, for each cron job, the last slot it dealt with. Each tick, at
``now``, enqueues in order every slot after that one up to ``now + tick + 1 s``: a slot is
enqueued up to a tick and a second before it is due, with ``scheduled`` at the slot, and a
tick that comes late (a blocked event loop, a suspended process) still enqueues the slots
that fell due since the previous tick.

Catch-up. A scheduler starts at its first tick: a slot before it (when no worker ran) is
never enqueued. A late tick catches up only the slots of the last :data:`CATCH_UP_S` (60)
seconds; older ones are dropped and logged. So one tick enqueues at most ``60 s + tick +
1 s`` worth of slots per cron job: after an hour asleep, an every-second cron job gets the
last minute's 60 slots and the look-ahead, not 3,600.

Marks. Each job carries a ``once`` mark naming its cron job and slot: the backend inserts
the job and the mark in one atomic step, so of several workers that try one slot at most
one inserts it.

Keys. A cron job's id is its function's name when it is the function's only cron job,
else ``name#digest`` (see :func:`cron_ids`). With ``unique=False`` a run's key is
``cron:<id>:<slot ms>``; with ``unique=True`` it is ``cron:<id>``, so while one run of that
cron job is queued or active its other slots are refused. A slot refused before it is due
is tried again at the next tick (the run may have finished by then); one refused when due
is skipped.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.errors import ConfigurationError
from conveyor.job import Job
from conveyor.queue import Queue

logger = logging.getLogger("conveyor.cron")

#: Seconds back from now that a late tick catches up slots.
CATCH_UP_S = 60.0
#: The least time in seconds a slot's mark outlives the slot (or 10 ticks, if longer).
MARK_TTL_S = 3600.0


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
    """Enqueues due slots of cron jobs (see the module's docstring for the rules).

    Args:
        queue: Where cron jobs are enqueued.
        cron_jobs: :class:`conveyor.cron.CronJob` definitions.
        default_tz: The worker's ``cron_tz`` (UTC when None).
        tick: Seconds between ticks.

    Raises:
        ConfigurationError: For identical cron jobs of one function (see :func:`cron_ids`).
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
        self.catch_up_s = CATCH_UP_S
        self.ids = cron_ids(self.cron_jobs, self.default_tz)
        self._schedules = [cron.schedule(self.default_tz) for cron in self.cron_jobs]
        # Per cron job, the last slot dealt with; None until the first tick.
        self._done: list[float | None] = [None] * len(self.cron_jobs)

    def next_slots(self, now: float) -> list[tuple[Any, float]]:
        """Each cron job with its next slot after ``now``."""
        return [
            (cron, schedule.next_after(now))
            for cron, schedule in zip(self.cron_jobs, self._schedules, strict=True)
        ]

    async def tick(self, now: float | None = None) -> list[Job]:
        """Enqueue each cron job's slots from the last one dealt with up to a tick (plus a
        second) ahead, catching up at most :data:`CATCH_UP_S` seconds.

        Args:
            now: The current time in epoch seconds (``time.time()`` when None).

        Returns:
            The jobs this worker enqueued (other workers' are not included).
        """
        now = time.time() if now is None else now
        until = now + self.tick_s + 1.0
        jobs: list[Job] = []
        for index, cron in enumerate(self.cron_jobs):
            jobs += await self._enqueue_window(index, cron, now, until)
        return jobs

    async def _enqueue_window(self, index: int, cron: Any, now: float, until: float) -> list[Job]:
        schedule = self._schedules[index]
        done = self._done[index]
        if done is None:
            done = now - 0.001  # the first tick: a slot at this very instant counts
        slot = schedule.next_after(done)
        oldest = now - self.catch_up_s
        if slot <= oldest:
            logger.warning(
                "cron %s: slots from %s to %s are not enqueued: the scheduler was late and "
                "catches up %.0f s",
                cron.name,
                _iso(slot),
                _iso(schedule.previous_at_or_before(oldest)),
                self.catch_up_s,
            )
            done = oldest
            slot = schedule.next_after(done)
        self._done[index] = done
        jobs: list[Job] = []
        while slot <= until:
            enqueued = await self.queue.enqueue(self._job_for(self.ids[index], cron, slot, now))
            if enqueued is not None:
                logger.debug("cron %s enqueued for %s", cron.name, _iso(slot))
                jobs.append(enqueued)
            elif cron.unique and slot > now:
                break  # a run is queued or active: try this slot again next tick
            self._done[index] = slot
            slot = schedule.next_after(slot)
        return jobs

    def _job_for(self, cron_id: str, cron: Any, slot: float, now: float) -> Job:
        slot_ms = int(slot * 1000)
        kwargs: dict[str, Any] = dict(cron.job_kwargs())
        key = f"cron:{cron_id}" if cron.unique else f"cron:{cron_id}:{slot_ms}"
        meta = {
            "trigger": "cron",
            "cron": cron.cron,
            "scheduled_for": slot,
            "once": f"cron:{cron_id}:{slot_ms}",
            # The mark outlives its slot by far more than CATCH_UP_S, so a late tick of
            # another worker cannot find it expired and enqueue the slot again.
            "once_ttl": max(MARK_TTL_S, self.tick_s * 10) + max(0.0, slot - now),
        }
        return Job(
            function=cron.name,
            kwargs=dict(cron.kwargs or {}) or None,
            key=key,
            scheduled=slot,
            meta=meta,
            **kwargs,
        )


def _iso(instant: float) -> str:
    return datetime.fromtimestamp(instant, UTC).isoformat()
