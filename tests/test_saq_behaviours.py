"""SAQ's behaviours that do not depend on the backend: the Job's text form and dict, stuck
jobs, and the worker's SAQ methods (start cancelled, concurrency 0, schedule, abort).

The backend-dependent ones are in the conformance suite (``conformance/test_saq.py``).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from conveyor import CronJob, Job, Queue, Status, Worker
from conveyor.backends.memory import MemoryBackend
from conveyor.job import now_ms
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS, echo

FAST_TIMERS = {"schedule": 0.2, "stats": 1, "sweep": 0.2, "abort": 0.1}


async def _queue() -> Queue:
    queue = Queue(MemoryBackend("default"), name="default")
    await queue.connect()
    return queue


def test_info_is_saqs_text_form_and_the_dict_stays_available() -> None:
    queue = Queue(MemoryBackend("default"), name="q")
    job = Job("add", kwargs={"a": 1}, key="k", queue=queue, attempts=2, result=3, timeout=30)
    assert job.info() == "Job<function: add, queue: q, key: k, attempts: 2>"
    assert job.info(full=True) == (
        "Job<function: add, kwargs: {'a': 1}, queue: q, key: k, timeout: 30, attempts: 2, "
        "result: 3>"
    )
    assert job.info_dict() == {
        "function": "add",
        "kwargs": {"a": 1},
        "key": "k",
        "timeout": 30,
        "attempts": 2,
        "result": 3,
        "queue": "q",
    }
    assert job.info_dict(full=True)["status"] == "new"


def test_to_dict_has_saqs_keys_and_reads_back() -> None:
    queue = Queue(MemoryBackend("default"), name="q")
    job = Job("add", kwargs={"a": 1}, key="k", queue=queue)
    assert job.to_dict() == {"function": "add", "kwargs": {"a": 1}, "key": "k", "queue": "q"}
    job.status = Status.QUEUED
    assert job.to_dict()["status"] == "queued"
    loaded = Job.from_dict(job.to_dict())
    assert loaded.queue is None and loaded.key == "k" and loaded.status == Status.QUEUED
    # What a queue stores leaves its own name out.
    assert "queue" not in queue.load(queue.serialize(job))


def test_stuck_counts_an_aborting_job_past_its_timeout() -> None:
    started = now_ms() - 5_000
    for status, stuck in (
        (Status.ACTIVE, True),
        (Status.ABORTING, True),
        (Status.QUEUED, False),
        (Status.ABORTED, False),
    ):
        job = Job("f", timeout=1, started=started, status=status)
        assert job.stuck is stuck, status


def test_error_summary_is_the_tracebacks_last_line() -> None:
    traceback = (
        'Traceback (most recent call last):\n  File "t.py", line 1, in f\nValueError: bad input\n'
    )
    assert Job("f", error=traceback).error_summary == "ValueError: bad input"
    assert Job("f", error="no heartbeat within 5s").error_summary == "no heartbeat within 5s"
    assert Job("f").error_summary is None


async def test_cancelling_the_task_running_start_stops_the_worker_and_returns() -> None:
    queue = await _queue()
    worker = Worker(queue, TEST_FUNCTIONS, timers=FAST_TIMERS, shutdown_grace_period_s=5)
    task = asyncio.create_task(worker.start())
    job = await queue.enqueue("sleep", seconds=0.5, value="finished", key="running")
    assert job is not None
    await wait_until(lambda: "running" in worker._running, message="job running")
    task.cancel()
    # Returns, as SAQ's does, after a graceful stop: the running job finished.
    assert await asyncio.wait_for(task, 10) is None
    assert not task.cancelled()
    stored = await queue.job("running")
    assert stored is not None and stored.status == Status.COMPLETE
    assert stored.result == "finished"


async def test_a_worker_of_concurrency_0_runs_cron_and_sweeps_but_no_job() -> None:
    queue = await _queue()
    await queue.enqueue("echo", key="orphan", value=1)
    [row] = await queue.backend.claim("dead", 1, 0.5, time.time())  # its worker died
    worker = Worker(
        queue,
        [echo],
        concurrency=0,
        cron_jobs=[CronJob(echo, "* * * * * *", kwargs={"value": "cron"})],
        timers=FAST_TIMERS,
    )
    task = asyncio.create_task(worker.start())
    try:
        await wait_until(lambda: _status_is(queue, row.key, Status.FAILED), message="orphan swept")
        await wait_until(lambda: _cron_jobs(queue), message="a cron job enqueued")
        await asyncio.sleep(1.2)  # the cron job is due: a worker with slots would run it
        assert [job.status for job in await _cron_jobs(queue)] == [Status.QUEUED]
        assert worker._running == {}
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 10)


async def test_schedule_enqueues_the_cron_jobs_that_are_due() -> None:
    queue = await _queue()
    worker = Worker(queue, TEST_FUNCTIONS, cron_jobs=[CronJob(echo, "* * * * * *")])
    assert await _cron_jobs(queue) == []
    await worker.schedule()
    assert len(await _cron_jobs(queue)) >= 1


async def test_abort_cancels_an_aborted_job_now() -> None:
    queue = await _queue()
    # Leases renewed (and aborts seen) every minute: only worker.abort() sees it sooner.
    worker = Worker(queue, TEST_FUNCTIONS, lease_s=120, timers={"abort": 60})
    await queue.enqueue("sleep", key="long", seconds=30, timeout=60)
    processing = asyncio.create_task(worker.process())
    await wait_until(lambda: "long" in worker._running, message="job running")
    await queue.abort("long", "enough")
    await worker.abort(0)
    assert await asyncio.wait_for(processing, 10) is True
    stored = await queue.job("long")
    assert stored is not None and stored.status == Status.ABORTED and stored.error == "enough"


async def _status_is(queue: Queue, key: str, status: Status) -> bool:
    job = await queue.job(key)
    return job is not None and job.status == status


async def _cron_jobs(queue: Queue) -> list[Job]:
    return [job async for job in queue.iter_jobs() if (job.meta or {}).get("trigger") == "cron"]


async def test_cancelling_process_requeues_its_job() -> None:
    queue = await _queue()
    worker = Worker(queue, TEST_FUNCTIONS)
    await queue.enqueue("sleep", key="long", seconds=30, timeout=60)
    processing = asyncio.create_task(worker.process())
    await wait_until(lambda: "long" in worker._running, message="job running")
    processing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(processing, 10)
    stored = await queue.job("long")
    assert stored is not None and stored.status == Status.QUEUED
    assert stored.error == "worker shut down"
