"""SAQ's behaviours that a SAQ program relies on, on every backend: polling options, counts,
status changes through ``update``, ``dequeue``'s wait, ``Job.enqueue``, the job's error,
and the worker's SAQ methods.

A status written through ``update`` goes through the state machine, fenced like the step
it stands for: these tests check that it never lets a stale owner write.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conveyor.backends.base import Lease, RunFilter
from conveyor.errors import JobError, LeaseLostError
from conveyor.job import Job, Status
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS
from conveyor.worker import Worker

__all__ = [
    "test_apply_and_map_give_none_for_a_job_deleted_once_finished",
    "test_counts_mean_what_saqs_mean_and_follow_an_abort",
    "test_dequeue_waits_for_a_job_by_default",
    "test_job_enqueue_reloads_an_existing_key_and_refuses_another_queue",
    "test_job_error_is_the_traceback_and_the_run_keeps_the_summary",
    "test_poll_interval_is_accepted_and_ignored",
    "test_stale_owner_cannot_write_a_status",
    "test_task_that_sets_its_own_status_keeps_it",
    "test_touched_is_not_set_at_enqueue",
    "test_update_status_of_a_claimed_job_is_fenced_and_ends_the_attempt",
    "test_update_status_of_a_job_not_claimed_here",
    "test_worker_process_info_and_counters",
]

LEASE_S = 30.0


async def test_poll_interval_is_accepted_and_ignored(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        # Not passed to the task (echo takes no such argument: it would fail).
        assert await queue.apply("echo", value=1, poll_interval=1, timeout=10) == 1
        assert await queue.apply(Job("echo", kwargs={"value": 2}), poll_interval=1) == 2
        assert await queue.map("echo", [{"value": 3}], poll_interval=1, timeout=10) == [3]
        job = await queue.enqueue("echo", value=4)
        assert job is not None
        await job.refresh(until_complete=10, poll_interval=1)
        assert job.result == 4
        assert (await queue.refresh(job, until_complete=10, poll_interval=1)).result == 4
        seen: list[Status] = []
        await queue.listen([job.key], lambda _key, status: seen.append(status), 5, 1)
        assert seen == [Status.COMPLETE]
    await queue.enqueue("echo", key="claim-me")
    claimed = await queue.dequeue(5, poll_interval=1)
    assert claimed is not None and claimed.key == "claim-me"


async def test_apply_and_map_give_none_for_a_job_deleted_once_finished(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        assert await queue.apply("echo", value=1, ttl=-1, timeout=10) is None
        assert await queue.map("echo", [{"value": 1}, {"value": 2}], ttl=-1, timeout=10) == [
            None,
            None,
        ]
        assert await queue.apply(Job("echo", kwargs={"value": 1}, ttl=-1), timeout=10) is None


async def test_dequeue_waits_for_a_job_by_default(make_queue: Any) -> None:
    queue = await make_queue()
    waiting = asyncio.ensure_future(queue.dequeue())
    try:
        done, _ = await asyncio.wait([waiting], timeout=0.5)
        assert not done, "dequeue() returned while the queue was empty"
        await queue.enqueue("echo", key="late")
        job = await asyncio.wait_for(waiting, 10)
    finally:
        waiting.cancel()
    assert job is not None and job.key == "late" and job.status == Status.ACTIVE


async def test_counts_mean_what_saqs_mean_and_follow_an_abort(make_queue: Any) -> None:
    queue = await make_queue()
    for n in range(4):
        await queue.enqueue("echo", key=f"due{n}")
    await queue.enqueue("echo", key="later", scheduled=time.time() + 600)
    first = await queue.dequeue(5)
    second = await queue.dequeue(5)
    assert first is not None and second is not None

    async def counts() -> tuple[int, ...]:
        kinds = ("queued", "active", "scheduled", "incomplete")
        numbers = tuple([await queue.count(kind) for kind in kinds])
        info = await queue.info()
        assert (info["queued"], info["active"], info["scheduled"]) == numbers[:3]
        return numbers

    assert await counts() == (2, 2, 1, 5)
    # An abort shows at once: an aborting job is neither active nor incomplete any more,
    # as in SAQ (its worker has yet to stop it); an aborted queued job is gone from both.
    await queue.abort(first, "stop")
    assert await counts() == (2, 1, 1, 4)
    await queue.abort("due3", "not needed")
    assert await counts() == (1, 1, 1, 3)


async def test_touched_is_not_set_at_enqueue(make_queue: Any) -> None:
    queue = await make_queue()
    job = await queue.enqueue("echo", key="k")
    assert job is not None and job.touched == 0 and job.queued > 0
    stored = await queue.job("k")
    assert stored is not None and stored.touched == 0


async def test_update_status_of_a_claimed_job_is_fenced_and_ends_the_attempt(
    make_queue: Any,
) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="done", value=1)
    await queue.enqueue("echo", key="again", value=2, retries=2)
    job = await queue.dequeue(5)
    assert job is not None and job.key == "done"
    # SAQ's own worker marks a dequeued job active: the status it has, so only the fields
    # are stored, and the lease is still held.
    await job.update(status=Status.ACTIVE, progress=0.5)
    assert job.lease_token is not None
    await job.update(status=Status.FAILED, error="gave up")
    assert job.lease_token is None  # the attempt ended: its token is spent
    stored = await queue.job("done")
    assert stored is not None and stored.status == Status.FAILED and stored.error == "gave up"
    [run] = (await queue.backend.list_runs(RunFilter(key="done"), 0, 10))[0]
    assert run.status == "failed" and run.error == "gave up"
    assert queue.failed == 1
    # queued through update is a retry.
    retried = await queue.dequeue(5)
    assert retried is not None and retried.key == "again"
    await queue.update(retried, status=Status.QUEUED)
    stored = await queue.job("again")
    assert stored is not None and stored.status == Status.QUEUED and stored.attempts == 1
    assert queue.retried == 1
    # Only a claim makes a job active: nothing is stored.
    with pytest.raises(ValueError, match="only a worker's claim"):
        await stored.update(status=Status.ACTIVE, progress=0.9)
    stored = await queue.job("again")
    assert stored is not None and stored.status == Status.QUEUED and stored.progress == 0


async def test_stale_owner_cannot_write_a_status(make_queue: Any) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="k", retries=2)
    [row] = await queue.backend.claim("w1", 1, LEASE_S, time.time())
    stale = queue.deserialize(row)
    assert stale is not None and stale.lease_token
    # Another worker takes the job over (as after w1 stalled past its lease).
    [taken] = await queue.backend.recover("w2", 10, LEASE_S, time.time() + 10 * LEASE_S)
    for status in (Status.COMPLETE, Status.FAILED, Status.QUEUED):
        with pytest.raises(LeaseLostError):
            await queue.update(stale, status=status, result="stale")
        stale.lease_token = row.token  # as the stale owner still holds it
    stored = await queue.job("k")
    assert stored is not None and stored.status == Status.ACTIVE
    assert stored.worker_id == "w2" and stored.result is None
    # The new owner's status write goes through.
    owner = queue.deserialize(taken)
    assert owner is not None
    await owner.update(status=Status.COMPLETE, result="mine")
    stored = await queue.job("k")
    assert stored is not None and stored.status == Status.COMPLETE and stored.result == "mine"


async def test_update_status_of_a_job_not_claimed_here(make_queue: Any) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="queued")
    await queue.enqueue("echo", key="running")
    await queue.enqueue("echo", key="finish-me")
    queued = await queue.job("queued")
    assert queued is not None
    await queued.update(status=Status.ABORTING, error="no")  # a queued job ends aborted
    stored = await queue.job("queued")
    assert stored is not None and stored.status == Status.ABORTED and stored.error == "no"
    claimed = await queue.dequeue(5)
    assert claimed is not None and claimed.key == "running"
    loaded = await queue.job("running")
    assert loaded is not None and loaded.lease_token is None
    # A worker holds it: no outcome from here, nothing stored.
    for status in (Status.COMPLETE, Status.FAILED, Status.QUEUED):
        with pytest.raises(ValueError, match="only that worker"):
            await loaded.update(status=status, result="not mine")
    stored = await queue.job("running")
    assert stored is not None and stored.status == Status.ACTIVE and stored.result is None
    await loaded.update(status=Status.ABORTING, error="stop")  # its worker is told
    renewal = await queue.backend.renew("dequeue", [_lease(claimed)], LEASE_S, time.time())
    assert renewal.aborting == ["running"]
    other = await queue.job("finish-me")
    assert other is not None
    await queue.update(other, status="complete", result=7)
    stored = await queue.job("finish-me")
    assert stored is not None and stored.status == Status.COMPLETE and stored.result == 7


async def test_task_that_sets_its_own_status_keeps_it(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS) as worker:
        job = await queue.enqueue(
            "set_status", key="own", to="failed", reason="not today", value="ignored"
        )
        assert job is not None
        await job.refresh(until_complete=10)
        await queue.enqueue("echo", key="after", value=1)
        [after] = await queue.wait(["after"], timeout=10)
        assert after.status == Status.COMPLETE
        # The worker wrote nothing over it (no unfenced write of its own outcome).
        stored = await queue.job("own")
        assert stored is not None and stored.status == Status.FAILED
        assert stored.error == "not today" and stored.result is None
        assert worker.stats["lost"] == 0 and worker.stats["failed"] == 1
        assert not worker._held  # the spent lease was let go, not renewed or lost


async def test_job_enqueue_reloads_an_existing_key_and_refuses_another_queue(
    make_queue: Any,
) -> None:
    one = await make_queue("one")
    two = await make_queue("two")
    await one.enqueue("echo", key="k", value="stored")
    again = Job("echo", key="k", kwargs={"value": "mine"}, queue=one)
    assert await again.enqueue() is None
    assert again.kwargs == {"value": "stored"} and again.status == Status.QUEUED
    with pytest.raises(ValueError, match="belongs to queue 'one'"):
        await again.enqueue(two)
    with pytest.raises(ValueError, match="belongs to queue 'one'"):
        await two.enqueue(again)
    assert await two.job("k") is None


async def test_job_error_is_the_traceback_and_the_run_keeps_the_summary(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        with pytest.raises(JobError) as caught:
            await queue.apply("fail", key="f", message="nope", timeout=10)
    job = caught.value.job
    assert job.error is not None and job.error.startswith("Traceback (most recent call last)")
    assert "in fail" in job.error and job.error_summary == "ValueError: nope"
    stored = await queue.job("f")
    assert stored is not None and stored.error == job.error
    [run] = (await queue.backend.list_runs(RunFilter(key="f"), 0, 10))[0]
    assert run.error == "ValueError: nope"


async def test_worker_process_info_and_counters(make_queue: Any) -> None:
    queue = await make_queue()
    worker = Worker(queue, TEST_FUNCTIONS, dequeue_timeout=0.2)
    assert await worker.process() is False
    await queue.enqueue("echo", key="one", value=1)
    await queue.enqueue("fail", key="two")
    assert await worker.process() is True
    assert await worker.process() is True
    one, two = await queue.job("one"), await queue.job("two")
    assert one is not None and one.status == Status.COMPLETE and one.result == 1
    assert two is not None and two.status == Status.FAILED
    assert (queue.complete, queue.failed, queue.retried, queue.aborted) == (1, 1, 0, 0)
    info = await worker.worker_info()
    assert info["queue_key"] == queue.name and info["metadata"] == {}
    assert set(info["stats"]) >= {"complete", "failed", "retried", "aborted", "uptime"}
    published = (await queue.info())["workers"][worker.id]
    assert published["queue_key"] == queue.name and published["stats"]["complete"] == 1
    await wait_until(lambda: not worker._held, message="leases let go")


def _lease(job: Job) -> Lease:
    return Lease(job.key, str(job.lease_token))
