"""Crash safety: a worker killed with SIGKILL loses no job."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor.backends.base import DetectsDeadOwners, RunFilter
from conveyor.job import Status
from conveyor.testing.faults import WorkerProcess
from conveyor.testing.fixtures import running_worker, worker_process_command
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS
from conveyor.worker.worker import DEFAULT_TIMERS

__all__ = [
    "test_a_dead_workers_jobs_come_back_within_a_sweep",
    "test_a_stalled_worker_loses_its_job_and_writes_nothing",
    "test_killed_worker_job_fails_when_no_retry_left",
    "test_killed_worker_job_is_recovered_and_runs_again",
    "test_sigterm_lets_running_job_finish",
]


def _require_cross_process(queue: Any) -> None:
    if not queue.backend.capabilities.cross_process:
        pytest.skip(f"the {queue.backend.name} backend declares cross_process=False")


@contextlib.asynccontextmanager
async def _worker_process(url: str, queue_name: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        *worker_process_command(url, queue_name, "1.0"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.strip() == b"ready", line
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _active_on(queue: Any, key: str) -> bool:
    job = await queue.job(key)
    return job is not None and job.status == Status.ACTIVE


async def test_killed_worker_job_is_recovered_and_runs_again(
    make_queue: Any, conveyor_url: str
) -> None:
    queue = await make_queue("crashy")
    _require_cross_process(queue)
    job = await queue.enqueue(
        "sleep", seconds=1.5, value="survived", retries=2, timeout=30, key="victim"
    )
    assert job is not None
    async with _worker_process(conveyor_url, "crashy") as process:
        await wait_until(lambda: _active_on(queue, "victim"), timeout=20, message="job started")
        process.send_signal(signal.SIGKILL)
        await process.wait()
    async with running_worker(queue, TEST_FUNCTIONS, lease_s=1.0):
        await job.refresh(until_complete=30)
    assert job.status == Status.COMPLETE and job.result == "survived"
    assert job.attempts == 2


async def test_killed_worker_job_fails_when_no_retry_left(
    make_queue: Any, conveyor_url: str
) -> None:
    queue = await make_queue("crashy")
    _require_cross_process(queue)
    job = await queue.enqueue("sleep", seconds=30, retries=1, timeout=60, key="last-chance")
    assert job is not None
    async with _worker_process(conveyor_url, "crashy") as process:
        await wait_until(lambda: _active_on(queue, "last-chance"), timeout=20, message="started")
        process.send_signal(signal.SIGKILL)
        await process.wait()
    async with running_worker(queue, TEST_FUNCTIONS, lease_s=1.0):
        await job.refresh(until_complete=30)
    assert job.status == Status.FAILED
    assert job.error == queue.swept_error_message


async def test_sigterm_lets_running_job_finish(make_queue: Any, conveyor_url: str) -> None:
    queue = await make_queue("graceful")
    _require_cross_process(queue)
    job = await queue.enqueue("sleep", seconds=1.0, value="finished", key="in-flight")
    assert job is not None
    async with _worker_process(conveyor_url, "graceful") as process:
        await wait_until(lambda: _active_on(queue, "in-flight"), timeout=20, message="started")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    stored = await queue.job("in-flight")
    assert stored is not None and stored.status == Status.COMPLETE
    assert stored.result == "finished"


async def test_a_stalled_worker_loses_its_job_and_writes_nothing(
    make_queue: Any, conveyor_url: str
) -> None:
    """A worker frozen for longer than its lease (a blocked event loop, a stopped VM) finds
    on waking that another worker took its job: it cancels it and nothing it writes about
    that attempt is stored."""
    queue = await make_queue("stalled")
    _require_cross_process(queue)
    job = await queue.enqueue("sleep", seconds=1.0, value="done", retries=3, timeout=30, key="k")
    assert job is not None
    async with WorkerProcess(conveyor_url, "stalled", lease_s=1.0) as frozen:
        await wait_until(lambda: _active_on(queue, "k"), timeout=20, message="job started")
        frozen.stall()
        async with running_worker(queue, TEST_FUNCTIONS, lease_s=1.0) as rescuer:
            await job.refresh(until_complete=30)
            assert job.status == Status.COMPLETE and job.attempts == 2
            assert job.worker_id == rescuer.id
            frozen.resume()
            await wait_until(
                lambda: "taken over" in frozen.output(),
                timeout=20,
                message="the frozen worker saw its lease was lost",
            )
        await frozen.terminate()
    stored = await queue.job("k")
    assert stored is not None and stored.status == Status.COMPLETE and stored.attempts == 2
    runs, _ = await queue.backend.list_runs(RunFilter(key="k"), 0, 10)
    # Newest first: the rescuer's complete run, then the frozen attempt's, ended by recovery.
    assert [run.status for run in runs] == ["complete", "retried"]
    assert runs[1].error == queue.swept_error_message


async def test_a_dead_workers_jobs_come_back_within_a_sweep(
    make_queue: Any, conveyor_url: str
) -> None:
    """Where the backend can tell that a worker is gone, its jobs come back within one sweep
    of its death (5 s with the default timers), not after its lease (15 s)."""
    queue = await make_queue("dead")
    _require_cross_process(queue)
    if not isinstance(queue.backend, DetectsDeadOwners):
        pytest.skip(f"the {queue.backend.name} backend cannot tell that a worker died")
    job = await queue.enqueue("sleep", seconds=30, retries=2, timeout=60, key="k")
    assert job is not None
    async with WorkerProcess(conveyor_url, "dead", lease_s=15.0) as doomed:
        await wait_until(lambda: _active_on(queue, "k"), timeout=20, message="job started")
        async with running_worker(queue, TEST_FUNCTIONS, timers=dict(DEFAULT_TIMERS)) as live:
            await wait_until(lambda: live.idle, message="the live worker is up")
            doomed.kill()
            # Within one sweep period of the death, plus the time to claim it again.
            await wait_until(
                lambda: _attempts_is(queue, "k", 2),
                timeout=DEFAULT_TIMERS["sweep"] + 1.5,
                message="the dead worker's job taken over within a sweep",
            )


async def _attempts_is(queue: Any, key: str, attempts: int) -> bool:
    job = await queue.job(key)
    return job is not None and job.attempts == attempts
