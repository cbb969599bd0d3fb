"""Cron: once per slot with several workers, no flooding, own run records."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from conveyor.backends.base import RunFilter
from conveyor.cron import CronJob
from conveyor.job import Job, Status
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.worker.scheduler import CronScheduler

__all__ = [
    "test_cron_fires_once_per_slot_with_two_workers",
    "test_cron_jobs_of_one_function_each_run_once_per_slot",
]

# A fixed, past instant: the scheduler is driven with fake times, so tests never sleep.
NOON = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()


async def report(ctx: dict[str, Any], *, region: str) -> str:
    """A task that several cron jobs run with different arguments."""
    return region


async def cleanup(ctx: dict[str, Any]) -> None:
    """A task with a single cron job."""


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
    assert len({job.key for job in enqueued}) == 3
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
