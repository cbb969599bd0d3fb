"""Sync task functions: the worker's own threads, hung threads, and process-run tasks.

Worker logic only, on the memory backend; what is stored about a sync attempt that outlives
its stop is checked on every backend by the conformance suite
(``test_sync_attempt_*`` in :mod:`conveyor.testing.conformance.test_worker`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor import Queue, Worker, task
from conveyor.admin import Admin
from conveyor.backends.base import RunFilter
from conveyor.backends.memory import MemoryBackend
from conveyor.errors import ConfigurationError
from conveyor.job import Job, Status
from conveyor.testing.conformance.test_worker import Stubborn
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import PROCESS_FUNCTIONS, TEST_FUNCTIONS

FUNCTIONS = [*TEST_FUNCTIONS, *PROCESS_FUNCTIONS]


async def memory_queue(**kwargs: Any) -> Queue:
    queue = Queue(MemoryBackend("default"), **kwargs)
    await queue.connect()
    return queue


def alive(pid: int) -> bool:
    """Whether a process with this id exists (a reaped child no longer does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def read_pid(pid_dir: Path, attempt: int) -> int:
    path = pid_dir / str(attempt)
    # A child process starts a fresh interpreter: seconds on a loaded machine.
    await wait_until(path.exists, timeout=30, message=f"attempt {attempt} started its child")
    return int(path.read_text())


class Blocked:
    """Sync tasks that block until released, counting how many are running."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0

    def run(self, ctx: dict[str, Any]) -> str:
        with self.lock:
            self.running += 1
        try:
            self.release.wait(30)
            return "released"
        finally:
            with self.lock:
                self.running -= 1


# Threads


async def test_more_hung_threads_than_the_default_executor_has_leave_a_slot_that_runs() -> None:
    # asyncio's default executor has min(32, cores + 4) threads: that many hung threads
    # used to make every later sync job time out before it started.
    default_threads = min(32, (os.cpu_count() or 1) + 4)
    hung = default_threads + 1
    queue = await memory_queue()
    blocked = Blocked()
    functions = [*TEST_FUNCTIONS, ("blocked", blocked.run)]
    async with running_worker(queue, functions, concurrency=hung + 1) as worker:
        try:
            for i in range(hung):
                await queue.enqueue("blocked", key=f"blocked-{i}", timeout=1)
            await wait_until(
                lambda: len(worker.hung) == hung, message=f"{hung} hung threads", timeout=15
            )
            result = await queue.apply(
                Job("sync_echo", kwargs={"value": "runs"}, timeout=1), timeout=10
            )
            assert result == {"value": "runs", "main_thread": False}
            assert blocked.running == hung  # their slots stayed taken meanwhile
            stored = await queue.job("blocked-0")
            assert stored is not None and stored.status == Status.ACTIVE
        finally:
            blocked.release.set()
        jobs = await queue.wait([f"blocked-{i}" for i in range(hung)], timeout=10)
        await wait_until(lambda: not worker.hung, message="hung list emptied")
    assert {job.status for job in jobs} == {Status.FAILED}
    assert {job.error for job in jobs} == {"job timed out after 1s"}
    assert worker.stats["failed"] == hung


async def test_the_worker_threads_are_its_own_and_end_with_it() -> None:
    queue = Queue(MemoryBackend("own-threads"), name="own-threads")
    await queue.connect()

    def mine() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("conveyor-sync-own-")]

    async with running_worker(queue, TEST_FUNCTIONS, concurrency=3) as worker:
        results = await queue.map("sync_echo", [{"value": i} for i in range(20)], timeout=10)
        assert [r["value"] for r in results] == list(range(20))
        assert not any(r["main_thread"] for r in results)
        assert 1 <= len(mine()) <= 3 and all(t.daemon for t in mine())
    await wait_until(lambda: not mine(), message="idle threads ended at stop")
    assert worker.hung == []


async def test_a_thread_hung_at_shutdown_is_requeued_to_start_after_a_lease() -> None:
    queue = await memory_queue()
    stubborn = Stubborn()
    settings: dict[str, Any] = {
        "lease_s": 5.0,
        "shutdown_grace_period_s": 0.1,
        "cancellation_hard_deadline_s": 0.2,
    }
    try:
        async with running_worker(
            queue, [*TEST_FUNCTIONS, ("stubborn", stubborn.run)], **settings
        ) as worker:
            await queue.enqueue("stubborn", key="stubborn", timeout=60)
            await wait_until(lambda: stubborn.first_running, message="attempt running")
            stopping = time.time()
        stored = await queue.job("stubborn")
        assert stored is not None and stubborn.first_running
        assert stored.status == Status.QUEUED and stored.attempts == 1
        assert "did not stop within the hard deadline" in (stored.error or "")
        # Not before the stopped worker's process would have exited, taking the thread.
        assert stored.scheduled >= stopping + 5.0
        assert [h.key for h in worker.hung] == ["stubborn"]
    finally:
        stubborn.release.set()
    await wait_until(lambda: not worker.hung, message="listed until the thread ended")
    assert stubborn.attempts == [1]


async def test_hung_threads_are_counted_by_the_health_check() -> None:
    queue = await memory_queue()
    admin = Admin.from_settings({"queue": queue, "functions": TEST_FUNCTIONS})
    blocked = Blocked()
    async with running_worker(queue, [*TEST_FUNCTIONS, ("blocked", blocked.run)]) as worker:
        try:
            await queue.enqueue("blocked", key="b", timeout=1)
            await wait_until(lambda: worker.hung, message="hung")

            async def counted() -> bool:
                health = await admin.health()
                return health.queues[0].hung == 1 and health.queues[0].workers[0].hung == 1

            await wait_until(counted, message="health counts the hung thread")
            [state] = await admin.queue_states()
            assert [w.hung for w in state.workers] == [1]
        finally:
            blocked.release.set()


# Processes


async def test_process_task_runs_in_a_child_with_a_reduced_context() -> None:
    queue = await memory_queue()
    async with running_worker(queue, FUNCTIONS) as worker:
        job = await queue.enqueue("process_context", key="ctx")
        assert job is not None
        await job.refresh(until_complete=20)
    assert job.status == Status.COMPLETE, job.error
    assert job.result["keys"] == ["job", "queue_name", "worker_id"]
    assert job.result["key"] == "ctx" and job.result["attempts"] == 1
    assert job.result["queue_name"] == "default" and job.result["worker_id"] == worker.id
    assert job.result["pid"] != os.getpid() and not alive(job.result["pid"])


async def test_process_task_past_its_timeout_is_killed_and_its_retry_runs(tmp_path: Path) -> None:
    queue = await memory_queue()
    async with running_worker(queue, FUNCTIONS, cancellation_hard_deadline_s=1.0) as worker:
        job = await queue.enqueue(
            "process_sleep",
            key="slow",
            seconds=60,
            quick_from=2,
            pid_dir=str(tmp_path),
            ignore_sigterm=True,
            # Longer than a child's start on a loaded machine, so that attempt 1's child
            # is running (and ignoring SIGTERM) when its timeout comes.
            timeout=4,
            retries=2,
        )
        assert job is not None
        first = await read_pid(tmp_path, 1)
        second = await read_pid(tmp_path, 2)
        # The first child was gone (killed: it ignored SIGTERM) before the retry started.
        assert not alive(first)
        await job.refresh(until_complete=20)
        assert worker.hung == []
    assert job.status == Status.COMPLETE and job.attempts == 2
    assert job.result["attempt"] == 2 and job.result["pid"] == second
    runs, _ = await queue.backend.list_runs(RunFilter(key="slow"), 0, 10)
    by_attempt = {run.attempt: run for run in runs}
    assert by_attempt[1].status == "retried"
    assert by_attempt[1].error == "job timed out after 4s"
    assert by_attempt[2].status == "complete"


async def test_process_task_is_stopped_by_an_abort(tmp_path: Path) -> None:
    queue = await memory_queue()
    async with running_worker(queue, FUNCTIONS):
        job = await queue.enqueue(
            "process_sleep", key="long", seconds=60, pid_dir=str(tmp_path), timeout=120
        )
        assert job is not None
        pid = await read_pid(tmp_path, 1)
        await queue.abort(job, "user cancelled")
        await job.refresh(until_complete=20)
        assert not alive(pid)
    assert job.status == Status.ABORTED and job.error == "user cancelled"


async def test_process_task_is_stopped_by_a_shutdown(tmp_path: Path) -> None:
    queue = await memory_queue()
    async with running_worker(queue, FUNCTIONS, shutdown_grace_period_s=0.1):
        await queue.enqueue(
            "process_sleep", key="long", seconds=60, pid_dir=str(tmp_path), timeout=120
        )
        pid = await read_pid(tmp_path, 1)
    assert not alive(pid)
    stored = await queue.job("long")
    assert stored is not None and stored.status == Status.QUEUED
    assert stored.error == "worker shut down"  # stopped in time: re-queued at once


async def test_a_ctrl_c_does_not_reach_a_process_task(tmp_path: Path) -> None:
    # A terminal's Ctrl-C signals the worker's whole process group; the worker alone stops
    # its children.
    queue = await memory_queue()
    async with running_worker(queue, FUNCTIONS):
        job = await queue.enqueue(
            "process_sleep", key="on", seconds=1, pid_dir=str(tmp_path), value="finished"
        )
        assert job is not None
        os.kill(await read_pid(tmp_path, 1), signal.SIGINT)
        await job.refresh(until_complete=20)
    assert job.status == Status.COMPLETE and job.result["value"] == "finished"


async def test_process_task_exception_is_reported_with_its_traceback() -> None:
    queue = await memory_queue()
    async with running_worker(queue, FUNCTIONS):
        job = await queue.enqueue("process_fail", key="fails", message="nope")
        assert job is not None
        await job.refresh(until_complete=20)
    # As in SAQ, the job's error is the child's traceback; its last line is the summary.
    assert job.status == Status.FAILED and job.error_summary == "ValueError: nope"
    assert job.error is not None and "in sync_fail" in job.error
    runs, _ = await queue.backend.list_runs(RunFilter(key="fails"), 0, 10)
    assert runs[0].error == "ValueError: nope"
    detail = queue.load(runs[0].detail)
    assert "in sync_fail" in detail["traceback"] and "ValueError: nope" in detail["traceback"]


LOCK = type(threading.Lock())


def _dump_with_locks(value: Any) -> str:
    """A serializer of rich objects, as users' may be: here locks, which do not pickle."""
    return json.dumps(value, default=lambda o: {"lock": 1} if isinstance(o, LOCK) else o)


def _load_with_locks(payload: bytes | str) -> Any:
    return json.loads(payload, object_hook=lambda d: threading.Lock() if d == {"lock": 1} else d)


async def test_an_argument_that_does_not_pickle_fails_the_job_naming_it() -> None:
    queue = await memory_queue(dump=_dump_with_locks, load=_load_with_locks)
    async with running_worker(queue, FUNCTIONS):
        job = await queue.enqueue(
            "process_sleep", key="lock", seconds=0, value={"lock": 1}, retries=3
        )
        assert job is not None
        await job.refresh(until_complete=20)
    assert job.status == Status.FAILED and job.attempts == 1  # no retry can fix it
    error = job.error or ""
    assert "argument 'value'" in error and "'process_sleep'" in error
    assert "process=True" in error and "pickle" in error


def test_a_process_task_must_be_importable_by_name() -> None:
    def nested(ctx: Any) -> None:
        pass

    queue = Queue.from_url("memory://")
    with pytest.raises(ConfigurationError) as raised:
        Worker(queue, [task(process=True)(nested)])
    assert "'nested'" in str(raised.value) and "top level" in str(raised.value)

    async def asynchronous(ctx: Any) -> None:
        pass

    with pytest.raises(ConfigurationError) as raised:
        task(process=True)(asynchronous)
    assert "'asynchronous'" in str(raised.value) and "async" in str(raised.value)


WORKER_THEN_KILLED = """
import asyncio, sys
from conveyor import Queue, Worker
from conveyor.testing.tasks import PROCESS_FUNCTIONS

async def main():
    queue = Queue.from_url("memory://")
    worker = Worker(queue, PROCESS_FUNCTIONS)
    await queue.enqueue("process_sleep", seconds=60, pid_dir=sys.argv[1], timeout=120)
    await worker.start()

asyncio.run(main())
"""


async def test_a_child_ends_when_its_worker_process_is_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER_THEN_KILLED,
        str(tmp_path),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        pid = await read_pid(tmp_path, 1)
        worker.send_signal(signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), 10)
        # The orphan is not this test's to reap: it is gone once /proc no longer lists it
        # as running (init reaps it).
        await wait_until(lambda: not _running(pid), message="orphaned child exited")
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
