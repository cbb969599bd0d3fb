"""Run records and per-run log capture, with many jobs at once."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from conveyor.backends.base import RunFilter
from conveyor.job import Status
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS

__all__ = [
    "test_capture_can_be_turned_off",
    "test_each_run_holds_exactly_its_own_lines_in_order",
    "test_extra_fields_and_tracebacks_are_kept",
    "test_lines_of_a_running_job_can_be_tailed",
    "test_log_cap_and_purge",
]

task_logger = logging.getLogger("conveyor.testing.logs")

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


async def test_lines_of_a_running_job_can_be_tailed(make_queue: Any) -> None:
    queue = await make_queue()
    release = asyncio.Event()

    async def long_run(ctx: dict[str, Any]) -> str:
        task_logger.info("first")
        await release.wait()
        task_logger.info("last")
        return "done"

    timers = {"schedule": 0.2, "stats": 1, "sweep": 0.2, "abort": 0.1, "logs": 0.05}
    async with running_worker(queue, [long_run], timers=timers):
        job = await queue.enqueue("long_run", timeout=60)
        assert job is not None

        async def run_id() -> str | None:
            current = await queue.job(job.key)
            found = current.meta.get("run_id") if current is not None else None
            return str(found) if found is not None else None

        running = await wait_until(run_id, message="the run started")

        async def first_line_stored() -> bool:
            lines = await queue.backend.read_logs(running, 0, 10)
            return [line.message for line in lines] == ["first"]

        await wait_until(first_line_stored, message="the first line, while the job runs")
        assert (await queue.job(job.key)).status == Status.ACTIVE
        release.set()
        await job.refresh(until_complete=30)
    assert job.status == Status.COMPLETE
    lines = await queue.backend.read_logs(running, 0, 10)
    assert [(line.seq, line.message) for line in lines] == [(1, "first"), (2, "last")]
    assert [line.message for line in await queue.backend.read_logs(running, 1, 10)] == ["last"]


async def test_extra_fields_and_tracebacks_are_kept(make_queue: Any) -> None:
    queue = await make_queue()

    async def detailed(ctx: dict[str, Any]) -> None:
        task_logger.info("plain")
        task_logger.warning("with extras", extra={"order": 7, "tags": ["a"], "ok": True})
        try:
            raise KeyError("missing")
        except KeyError:
            task_logger.exception("it failed")
        task_logger.info("plain")

    async with running_worker(queue, [detailed]):
        job = await queue.enqueue("detailed", timeout=60)
        assert job is not None
        await job.refresh(until_complete=30)
    assert job.status == Status.COMPLETE
    lines = await queue.backend.read_logs(str(job.meta["run_id"]), 0, 10)
    assert [line.level for line in lines] == ["INFO", "WARNING", "ERROR", "INFO"]
    plain, extras, failure, again = (queue.load(line.extra) for line in lines)
    site = {"logger": "conveyor.testing.logs", "file": __file__, "function": "detailed"}
    assert plain == {**site, "line": plain["line"]}
    assert again == {**site, "line": plain["line"] + 6}
    assert extras == {**site, "line": plain["line"] + 1, "order": 7, "tags": "['a']", "ok": True}
    assert lines[2].message.startswith("it failed\nTraceback (most recent call last):")
    assert "KeyError: 'missing'" in lines[2].message
    assert failure["function"] == "detailed"


async def test_capture_can_be_turned_off(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS, capture_logs=False):
        job = await queue.enqueue("log_lines", tag="quiet", count=2, timeout=60)
        assert job is not None
        await job.refresh(until_complete=30)
    assert job.status == Status.COMPLETE
    run_id = str(job.meta["run_id"])
    assert await queue.backend.get_run(run_id) is not None
    assert await queue.backend.read_logs(run_id, 0, 10) == []
