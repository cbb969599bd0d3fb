"""Run records and per-run log capture, with many jobs at once."""

from __future__ import annotations

import logging
import time
from typing import Any

from conveyor.backends.base import RunFilter
from conveyor.job import Status
from conveyor.testing.fixtures import running_worker
from conveyor.testing.tasks import TEST_FUNCTIONS

__all__ = [
    "test_each_run_holds_exactly_its_own_lines_in_order",
    "test_log_cap_and_purge",
]

hook_logger = logging.getLogger("conveyor.testing.hooks")


async def test_each_run_holds_exactly_its_own_lines_in_order(make_queue: Any) -> None:
    queue = await make_queue()

    def before(ctx: dict[str, Any]) -> None:
        hook_logger.info("before %s", ctx["job"].kwargs["tag"])

    async def after(ctx: dict[str, Any]) -> None:
        hook_logger.warning("after %s", ctx["job"].kwargs["tag"])

    tags = [f"t{i:03}" for i in range(200)]
    async with running_worker(
        queue, TEST_FUNCTIONS, concurrency=200, before_process=before, after_process=after
    ):
        jobs = await queue.map("log_lines", [{"tag": t, "count": 3} for t in tags], timeout=60)
    assert jobs == tags
    finished = {job.kwargs["tag"]: job async for job in queue.iter_jobs() if job.kwargs}
    for tag in tags:
        run_id = str(finished[tag].meta["run_id"])
        lines = await queue.backend.read_logs(run_id, 0, 100)
        messages = [line.message for line in lines]
        assert messages == [
            f"before {tag}",
            f"{tag} async 0",
            f"{tag} async 1",
            f"{tag} async 2",
            f"{tag} thread",
            f"after {tag}",
        ], (tag, messages)
        assert [line.seq for line in lines] == sorted(line.seq for line in lines)
        assert lines[-1].level == "WARNING"
        extra = queue.load(lines[1].extra)
        assert extra["logger"] == "conveyor.testing.tasks" and extra["function"] == "log_lines"


async def test_log_cap_and_purge(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        job = await queue.enqueue("log_lines", tag="flood", count=10_050, timeout=120)
        assert job is not None
        await job.refresh(until_complete=120)
    assert job.status == Status.COMPLETE
    run_id = str(job.meta["run_id"])
    lines = []
    cursor = 0
    while batch := await queue.backend.read_logs(run_id, cursor, 5000):
        lines.extend(batch)
        cursor = batch[-1].seq
    assert len(lines) == 10_001
    assert "51 log lines" in lines[-1].message and "dropped" in lines[-1].message
    deleted = await queue.backend.purge_runs(int(time.time() * 1000) + 1, 1000)
    assert deleted == 1
    assert await queue.backend.get_run(run_id) is None
    assert await queue.backend.read_logs(run_id, 0, 10) == []
    _, total = await queue.backend.list_runs(RunFilter(), 0, 10)
    assert total == 0
