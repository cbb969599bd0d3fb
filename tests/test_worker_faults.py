"""The worker's own fault handling: settings it refuses, rows the backend refuses, a backend
that stops answering during shutdown, a stop that arrives in the middle of a claim.

The backend here is the memory backend with one operation made to fail or stall; the same
paths on real servers are taken by the fault-injection tests (tests/test_fault_*.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import pytest

from conveyor import Queue, Worker
from conveyor.backends.base import JobRow, LogLine, LogRow, RunFilter, Transition
from conveyor.backends.memory import MemoryBackend
from conveyor.errors import BackendError, ConfigurationError
from conveyor.job import Status
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"lease_s": 0}, "lease_s"),
        ({"lease_s": -5}, "lease_s"),
        ({"lease_s": 1.5}, "lease_s"),  # renewed every 1 s: shorter than two renewals
        ({"timers": {"abort": 0}}, 'timers["abort"]'),
        ({"timers": {"sweep": -1}}, 'timers["sweep"]'),
        ({"timers": {"stats": "often"}}, 'timers["stats"]'),
        ({"concurrency": -1}, "concurrency"),
        ({"concurrency": 0, "burst": True}, "concurrency"),
        ({"shutdown_grace_period_s": -1}, "shutdown_grace_period_s"),
        ({"cancellation_hard_deadline_s": 0}, "cancellation_hard_deadline_s"),
        ({"max_burst_jobs": 0}, "max_burst_jobs"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(
    settings: dict[str, Any], named: str
) -> None:
    queue = Queue.from_url("memory://")
    with pytest.raises(ConfigurationError) as raised:
        Worker(queue, TEST_FUNCTIONS, **settings)
    assert str(raised.value).startswith(named), raised.value


def test_a_lease_of_two_renewals_is_accepted() -> None:
    queue = Queue.from_url("memory://")
    worker = Worker(queue, TEST_FUNCTIONS, lease_s=1.0, timers={"abort": 0.5})
    assert worker.lease_s == 1.0


class Refusing(MemoryBackend):
    """A memory backend that refuses rows naming ``poison`` and can refuse everything."""

    def __init__(self) -> None:
        super().__init__("default")
        self.down = False

    async def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        if self.down or any("poison" in t.key for t in transitions):
            raise BackendError("memory", "refused")
        return await super().finish(transitions)

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        if self.down or any("poison" in line.message for line in lines):
            raise BackendError("memory", "refused")
        await super().append_logs(lines)

    async def finish_with_logs(
        self, transitions: Sequence[Transition], rows: Sequence[LogRow]
    ) -> list[bool]:
        await self.append_logs([LogLine(*row) for row in rows])
        return await self.finish(transitions)


async def test_a_row_the_backend_refuses_does_not_hold_back_the_others() -> None:
    backend = Refusing()
    queue = Queue(backend, name="default")
    async with running_worker(queue, TEST_FUNCTIONS, concurrency=4, lease_s=2) as worker:
        await queue.enqueue("log_lines", key="lines", tag="poison", count=2)
        await queue.enqueue("echo", key="poison-job", value=1)
        keys = [f"fine-{n}" for n in range(6)]
        for key in keys:
            await queue.enqueue("log_lines", key=key, tag="fine")
        done = await queue.wait([*keys, "lines"], timeout=20)
        assert all(job.status == Status.COMPLETE for job in done)
        writer = worker._writer
        assert writer is not None
        # Its 2 lines and the one it logs from a thread, each refused alone, are dropped.
        await wait_until(lambda: writer.dropped_lines == 3, message="the poison lines dropped")
        # The refused outcome stays pending (and its lease held); the others were written.
        assert writer.pending_keys() == {"poison-job"}
        assert "poison-job" in worker._held
        runs, _ = await backend.list_runs(_key("fine-0"), 0, 1)
        assert len(await backend.read_logs(runs[0].run_id, 0, 10)) == 4  # 3 + the thread's
        stored = await queue.job("poison-job")
        assert stored is not None and stored.status == Status.ACTIVE


async def test_stop_is_bounded_while_the_backend_refuses_every_write() -> None:
    backend = Refusing()
    queue = Queue(backend, name="default")
    worker = Worker(queue, TEST_FUNCTIONS, lease_s=1.0, timers={"abort": 0.2})
    task = asyncio.create_task(worker.start())
    job = await queue.enqueue("sleep", seconds=0.2, value="done")
    assert job is not None
    await wait_until(lambda: worker.stats["complete"] == 1, message="the job ran")
    backend.down = True
    await queue.enqueue("echo", key="late")
    await wait_until(lambda: worker.stats["complete"] == 2, message="the second job ran")
    started = time.monotonic()
    await asyncio.wait_for(worker.stop(), 10)
    await asyncio.wait_for(task, 5)
    # Writes get lease_s (1 s), since other workers may recover the jobs after that anyway.
    assert time.monotonic() - started < 5
    late = await queue.job("late")
    assert late is not None and late.status == Status.ACTIVE  # left to recovery


class SlowClaim(MemoryBackend):
    """A memory backend whose claim takes jobs at once but answers only when released."""

    def __init__(self) -> None:
        super().__init__("default")
        self.claimed = asyncio.Event()
        self.release = asyncio.Event()

    async def claim(self, worker_id: str, limit: int, lease_s: float, now: float) -> list[JobRow]:
        rows = await super().claim(worker_id, limit, lease_s, now)
        if rows:
            self.claimed.set()
            await self.release.wait()
        return rows


async def test_a_stop_during_a_claim_runs_the_jobs_it_took() -> None:
    backend = SlowClaim()
    queue = Queue(backend, name="default")
    worker = Worker(queue, TEST_FUNCTIONS, shutdown_grace_period_s=5)
    task = asyncio.create_task(worker.start())
    await queue.enqueue("echo", key="k", value="ran")
    await backend.claimed.wait()
    stopping = asyncio.create_task(worker.stop())
    await wait_until(lambda: worker._stopping, message="stop began")
    backend.release.set()
    await asyncio.wait_for(stopping, 10)
    await asyncio.wait_for(task, 5)
    job = await queue.job("k")
    assert job is not None and job.status == Status.COMPLETE and job.result == "ran"


def _key(key: str) -> RunFilter:
    return RunFilter(key=key)


async def test_a_job_that_outlives_the_hard_deadline_is_requeued() -> None:
    released = asyncio.Event()

    async def stubborn(ctx: dict[str, Any]) -> str:
        """An async task that ignores its cancellation until the test releases it."""
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()
        return "late"

    queue = Queue.from_url("memory://")
    worker = Worker(
        queue,
        [stubborn],
        shutdown_grace_period_s=0.1,
        cancellation_hard_deadline_s=0.2,
        lease_s=2.0,
        timers={"abort": 0.1},
    )
    task = asyncio.create_task(worker.start())
    await queue.enqueue("stubborn", key="k", timeout=0)
    await wait_until(lambda: "k" in worker._running, message="the job runs")
    await asyncio.wait_for(worker.stop(), 10)
    await asyncio.wait_for(task, 5)
    job = await queue.job("k")
    assert job is not None and job.status == Status.QUEUED
    assert job.error and "did not stop within the hard deadline" in job.error
    released.set()  # the attempt ends late: nothing more of it is written
    await asyncio.gather(*(entry.task for entry in worker._running.values()))
    job = await queue.job("k")
    assert job is not None and job.status == Status.QUEUED and job.result is None
