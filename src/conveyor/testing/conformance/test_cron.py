"""Cron: once per slot with several workers, no flooding, own run records."""

from __future__ import annotations

from collections import Counter
from typing import Any

from conveyor.backends.base import RunFilter
from conveyor.cron import CronJob
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until

__all__ = ["test_cron_fires_once_per_slot_with_two_workers"]


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
