"""Cron: once per slot with several workers, no flooding, own run records."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.backends.base import RunFilter
from conveyor.cron import CronJob
from conveyor.job import Job, Status
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.worker.scheduler import CATCH_UP_S, CronScheduler

__all__ = [
    "test_cron_every_second_slot_is_enqueued_once_by_two_schedulers_with_late_ticks",
    "test_cron_fires_once_per_slot_with_two_workers",
    "test_cron_jobs_of_one_function_each_run_once_per_slot",
    "test_cron_late_ticks_catch_up_the_last_minute_and_nothing_before_the_start",
    "test_unique_cron_job_skips_only_slots_due_while_its_run_is_incomplete",
]

# A fixed, past instant: the scheduler is driven with fake times, so tests never sleep.
NOON = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()


async def report(ctx: dict[str, Any], *, region: str) -> str:
    """A task that several cron jobs run with different arguments."""
    return region


async def cleanup(ctx: dict[str, Any]) -> None:
    """A task with a single cron job."""


async def beat(ctx: dict[str, Any]) -> None:
    """A task run every second."""


def _slots(jobs: list[Job]) -> Counter[float]:
    return Counter(float(job.meta["scheduled_for"]) for job in jobs)


def _runs(jobs: list[Job]) -> list[tuple[str, str, float]]:
    return sorted(
        (str((job.kwargs or {})["region"]), job.meta["cron"], float(job.meta["scheduled_for"]))
        for job in jobs
    )


async def test_cron_fires_once_per_slot_with_two_workers(make_queue: Any) -> None:
    first = await make_queue("cron")
    second = await make_queue("cron")
    fired: list[float] = []

    async def tick(ctx: dict[str, Any]) -> float:
        slot = float(ctx["job"].meta["scheduled_for"])
        fired.append(slot)
        return slot

    every_second = CronJob(tick, cron="* * * * * *", unique=False)
    async with (
        running_worker(first, [], cron_jobs=[every_second]),
        running_worker(second, [], cron_jobs=[every_second]),
    ):
        await wait_until(lambda: len(fired) >= 4, timeout=20, message="four cron slots ran")
    counts = Counter(fired)
    assert counts and max(counts.values()) == 1, counts
    assert all(slot == int(slot) for slot in fired)
    runs, total = await first.backend.list_runs(RunFilter(function=every_second.name), 0, 100)
    assert total >= 4
    detail = first.load(runs[0].detail)
    assert detail["trigger"] == "cron" and detail["cron"] == "* * * * * *"


def _report_cron_jobs() -> list[CronJob]:
    """Three cron jobs of one function: two differ by kwargs, one by its expression (and
    fires at noon with the others)."""
    return [
        CronJob(report, cron="0 * * * *", kwargs={"region": "eu"}),
        CronJob(report, cron="0 * * * *", kwargs={"region": "us"}),
        CronJob(report, cron="0 12 * * *", kwargs={"region": "eu"}, unique=False),
    ]


async def test_cron_jobs_of_one_function_each_run_once_per_slot(make_queue: Any) -> None:
    first = await make_queue("cron")
    second = await make_queue("cron")
    # Two workers, each with its own (equal) definitions, as in two processes.
    one = CronScheduler(first, _report_cron_jobs(), None, tick=1)
    other = CronScheduler(second, _report_cron_jobs(), None, tick=1)

    enqueued = await one.tick(now=NOON - 0.5)
    assert _runs(enqueued) == [
        ("eu", "0 * * * *", NOON),
        ("eu", "0 12 * * *", NOON),
        ("us", "0 * * * *", NOON),
    ]
    keys = {job.meta["cron"] + str((job.kwargs or {})["region"]): job.key for job in enqueued}
    assert len(set(keys.values())) == 3
    assert all(key.startswith("cron:report#") for key in keys.values())
    assert keys["0 12 * * *eu"].endswith(f":{int(NOON * 1000)}")  # unique=False: per slot
    assert await other.tick(now=NOON - 0.4) == []  # both workers agree on each slot's mark
    assert await first.count("incomplete") == 3

    # unique=True holds per cron job: while eu's noon run is queued, its 13:00 slot is
    # skipped; us's noon run finished, so its 13:00 slot runs.
    claimed = [await first.dequeue(timeout=5) for _ in range(3)]
    [us_run] = [job for job in claimed if job is not None and job.kwargs == {"region": "us"}]
    await first.finish(us_run, Status.COMPLETE, result="us")
    later = await other.tick(now=NOON + 3599.5)
    assert _runs(later) == [("us", "0 * * * *", NOON + 3600)]
    assert await one.tick(now=NOON + 3599.6) == []

    # A function's only cron job keeps the key it always had.
    [alone] = await CronScheduler(first, [CronJob(cleanup, cron="0 * * * *")], None, 1).tick(
        now=NOON - 0.5
    )
    assert alone.key == "cron:cleanup"


async def test_cron_every_second_slot_is_enqueued_once_by_two_schedulers_with_late_ticks(
    make_queue: Any,
) -> None:
    first = await make_queue("cron")
    second = await make_queue("cron")
    one = CronScheduler(first, [CronJob(beat, cron="* * * * * *", unique=False)], None, tick=1)
    other = CronScheduler(second, [CronJob(beat, cron="* * * * * *", unique=False)], None, 1)
    # Interleaved ticks of two workers, on time, early and late (by up to 3.9 s).
    ticks = [(one, 0.3), (other, 0.8), (one, 1.9), (other, 2.2), (one, 4.6), (other, 5.0)]
    ticks += [(one, 5.4), (other, 8.9), (one, 9.1), (one, 10.05)]
    enqueued: list[Job] = []
    for scheduler, offset in ticks:
        enqueued += await scheduler.tick(now=NOON + offset)
    # Each tick looks a tick and a second ahead: the last one, at +10.05, up to +12.05.
    expected = Counter(NOON + second for second in range(1, 13))
    assert _slots(enqueued) == expected
    assert all(job.scheduled == job.meta["scheduled_for"] for job in enqueued)
    assert await first.count("incomplete") == len(expected)


async def test_cron_late_ticks_catch_up_the_last_minute_and_nothing_before_the_start(
    make_queue: Any, caplog: pytest.LogCaptureFixture
) -> None:
    queue = await make_queue("cron")
    every_second = CronJob(beat, cron="* * * * * *", unique=False)
    hourly = CronJob(cleanup, cron="0 * * * *", unique=False)
    scheduler = CronScheduler(queue, [every_second, hourly], None, tick=1)
    assert scheduler.catch_up_s == CATCH_UP_S == 60
    # A scheduler starts at its first tick: slots before it are not caught up.
    started = await scheduler.tick(now=NOON + 1800.5)
    assert _slots(started) == Counter([NOON + 1801, NOON + 1802])
    # Late by an hour (a suspended process): only the last minute's slots are caught up,
    # with the slots a tick and a second ahead; the hourly slot 30 minutes ago is dropped.
    with caplog.at_level(logging.WARNING, logger="conveyor.cron"):
        late = await scheduler.tick(now=NOON + 5400.5)
    # Each dropped stretch is logged, from its first slot: +1803 and the hourly +3600.
    beat_dropped, cleanup_dropped = [
        r.getMessage() for r in caplog.records if r.name == "conveyor.cron"
    ]
    assert beat_dropped.startswith("cron beat: slots from 2026-01-01T12:30:03+00:00 to")
    assert cleanup_dropped.startswith("cron cleanup: slots from 2026-01-01T13:00:00+00:00 to")
    beats = [job for job in late if job.function == "beat"]
    assert _slots(beats) == Counter(NOON + s for s in range(5400 - 59, 5403))
    assert [job for job in late if job.function == "cleanup"] == []
    # Late again, the hourly slot 30 s ago is within the minute: it is caught up.
    again = await scheduler.tick(now=NOON + 7230.5)
    assert _slots([job for job in again if job.function == "beat"]) == Counter(
        NOON + s for s in range(7230 - 59, 7233)
    )
    assert _slots([job for job in again if job.function == "cleanup"]) == Counter([NOON + 7200])


async def test_unique_cron_job_skips_only_slots_due_while_its_run_is_incomplete(
    make_queue: Any,
) -> None:
    queue = await make_queue("cron")
    scheduler = CronScheduler(queue, [CronJob(beat, cron="* * * * * *")], None, tick=1)

    async def run_one() -> None:
        job = await queue.dequeue(timeout=5)
        assert job is not None
        await queue.finish(job, Status.COMPLETE)

    enqueued = await scheduler.tick(now=NOON + 0.3)  # +1; +2 waits for +1's run
    await run_one()
    enqueued += await scheduler.tick(now=NOON + 1.3)  # +2 now; +3 waits
    enqueued += await scheduler.tick(now=NOON + 2.3)  # +3 still waits: +2 is queued
    enqueued += await scheduler.tick(now=NOON + 3.5)  # +3 is due, +2 still queued: skipped
    await run_one()
    enqueued += await scheduler.tick(now=NOON + 3.8)  # +4 before it is due; +5 waits
    assert [float(job.meta["scheduled_for"]) for job in enqueued] == [
        NOON + 1,
        NOON + 2,
        NOON + 4,
    ]
