"""Runs in a separate store: ``Queue.from_url(url, runs_url=...)``.

The job store keeps claiming and finishing jobs; every run record and log line is kept
in (and read from) the run store, as if the queue's history lived in another database.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigurationError, Queue
from conveyor.backends.base import RunFilter
from conveyor.backends.split import SplitBackend
from conveyor.job import Status
from conveyor.testing.backends import isolated_url
from conveyor.testing.fixtures import require_backend, running_worker
from conveyor.testing.tasks import TEST_FUNCTIONS

PAIRS = [("sqlite", "sqlite"), ("memory", "sqlite"), ("redis", "postgres"), ("sqlite", "postgres")]


@pytest.fixture(params=PAIRS, ids=lambda pair: f"{pair[0]}+{pair[1]}-runs")
async def split(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Queue, str]]:
    jobs_kind, runs_kind = request.param
    require_backend(jobs_kind, runs_kind)
    jobs_url = isolated_url(jobs_kind, tmp_path / "jobs")
    (tmp_path / "jobs").mkdir()
    runs_url = isolated_url(runs_kind, tmp_path)
    queue = Queue.from_url(jobs_url, runs_url=runs_url, name="split")
    await queue.connect()
    assert isinstance(queue.backend, SplitBackend)
    try:
        yield queue, runs_url
    finally:
        await queue.backend.drop()
        await queue.disconnect()


async def test_runs_and_logs_live_in_the_run_store(split: tuple[Queue, str]) -> None:
    queue, runs_url = split
    async with running_worker(queue, TEST_FUNCTIONS):
        flaky = await queue.enqueue("fail_until", succeed_on=2, retries=2, key="flaky")
        logged = await queue.enqueue("log_lines", tag="split", count=2, key="logged")
        assert flaky and logged
        await flaky.refresh(until_complete=20)
        await logged.refresh(until_complete=20)
    assert flaky.status == Status.COMPLETE and flaky.attempts == 2

    # Read the history through a plain queue on the run store: that is where it lives.
    history = Queue.from_url(runs_url, name="split")
    await history.connect()
    try:
        runs, total = await history.backend.list_runs(RunFilter(key="flaky"), 0, 10)
        assert total == 2
        first, second = sorted(runs, key=lambda run: run.attempt)
        assert first.status == "retried" and "attempt 1 fails" in (first.error or "")
        assert second.status == "complete" and second.function == "fail_until"
        run_id = str(logged.meta["run_id"])
        lines = await history.backend.read_logs(run_id, 0, 100)
        assert [line.message for line in lines] == [
            "split async 0",
            "split async 1",
            "split thread",
        ]
        stored = await history.backend.get_run(run_id)
        assert stored is not None and stored.status == "complete" and stored.key == "logged"
    finally:
        await history.disconnect()

    # The split queue reads runs from the run store too.
    runs, total = await queue.backend.list_runs(RunFilter(), 0, 10)
    assert total == 3 and {run.key for run in runs} == {"flaky", "logged"}

    deleted = await queue.backend.purge_runs(int(time.time() * 1000) + 1, 1000)
    assert deleted >= 3
    _, left = await queue.backend.list_runs(RunFilter(), 0, 10)
    assert left == 0
    _, left_in_job_store = await queue.backend.jobs.list_runs(RunFilter(), 0, 10)  # type: ignore[attr-defined]
    assert left_in_job_store == 0, "the job store's own copies are purged too"


async def test_a_store_that_cannot_keep_runs_is_refused(tmp_path: Path) -> None:
    require_backend("redis")
    with pytest.raises(ConfigurationError, match="cannot keep another store's runs"):
        Queue.from_url(
            f"sqlite:///{tmp_path / 'jobs.db'}", runs_url=isolated_url("redis", tmp_path)
        )


async def test_job_stores_sharing_a_run_store_do_not_collide(tmp_path: Path) -> None:
    runs_url = isolated_url("sqlite", tmp_path)
    queues: list[Any] = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        queue = Queue.from_url(isolated_url("sqlite", tmp_path / name), runs_url=runs_url, name="q")
        await queue.connect()
        queues.append(queue)
    try:
        for name, queue in zip("ab", queues, strict=True):
            async with running_worker(queue, TEST_FUNCTIONS):
                assert await queue.apply("echo", value=name, timeout=10) == name
        _, total = await queues[0].backend.list_runs(RunFilter(), 0, 10)
        assert total == 2, "each job store's first run has id 1 locally; both are kept"
    finally:
        for queue in queues:
            await queue.disconnect()
