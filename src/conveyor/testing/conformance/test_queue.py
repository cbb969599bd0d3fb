"""Queue operations without a worker: enqueue, dedup, order, abort, pagination, counts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conveyor.errors import JobNotFoundError, SerializationError
from conveyor.job import Job, Status

__all__ = [
    "test_abort_queued_job_never_runs",
    "test_claim_honours_priority_then_fifo",
    "test_count_and_info_with_pagination",
    "test_dedup_key_while_incomplete",
    "test_enqueue_and_read_back",
    "test_enqueue_many_in_one_call",
    "test_finished_job_key_can_be_reused",
    "test_group_key_one_at_a_time",
    "test_iter_jobs_pages_through_everything",
    "test_queues_are_isolated_by_name",
    "test_scheduled_job_waits_until_due",
    "test_unserializable_argument_names_it_and_stores_nothing",
]


async def test_enqueue_and_read_back(make_queue: Any) -> None:
    queue = await make_queue()
    job = await queue.enqueue("echo", value={"a": [1, 2]}, timeout=7, key="k1")
    assert job is not None and job.status == Status.QUEUED
    stored = await queue.job("k1")
    assert stored is not None
    assert stored.function == "echo"
    assert stored.kwargs == {"value": {"a": [1, 2]}}
    assert stored.timeout == 7
    assert stored.status == Status.QUEUED
    assert stored.queued > 0
    assert await queue.job("missing") is None


async def test_dedup_key_while_incomplete(make_queue: Any) -> None:
    queue = await make_queue()
    assert await queue.enqueue("echo", key="same") is not None
    assert await queue.enqueue("echo", key="same") is None
    [job] = [j async for j in queue.iter_jobs()]
    assert job.key == "same"


async def test_finished_job_key_can_be_reused(make_queue: Any) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="again", value=1)
    job = await queue.dequeue()
    assert job is not None
    await queue.finish(job, Status.COMPLETE, result=1)
    again = await queue.enqueue("echo", key="again", value=2)
    assert again is not None
    stored = await queue.job("again")
    assert stored is not None and stored.status == Status.QUEUED
    assert stored.kwargs == {"value": 2}


async def test_claim_honours_priority_then_fifo(make_queue: Any) -> None:
    queue = await make_queue()
    for i in range(3):
        await queue.enqueue("echo", key=f"low{i}", priority=5)
    await queue.enqueue("echo", key="urgent", priority=-1)
    for i in range(3):
        await queue.enqueue("echo", key=f"normal{i}")
    order = []
    while (job := await queue.dequeue(timeout=0.1)) is not None:
        order.append(job.key)
    assert order == ["urgent", "normal0", "normal1", "normal2", "low0", "low1", "low2"]


async def test_scheduled_job_waits_until_due(make_queue: Any) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="later", scheduled=time.time() + 0.5)
    await queue.enqueue("echo", key="now")
    assert await queue.count("scheduled") == 1
    first = await queue.dequeue()
    assert first is not None and first.key == "now"
    assert await queue.dequeue(timeout=0.1) is None
    later = await queue.dequeue(timeout=5)
    assert later is not None and later.key == "later"
    assert time.time() >= later.scheduled


async def test_abort_queued_job_never_runs(make_queue: Any) -> None:
    queue = await make_queue()
    job = await queue.enqueue("echo", key="doomed")
    assert job is not None
    await queue.abort(job, "changed my mind")
    assert await queue.dequeue(timeout=0.1) is None
    stored = await queue.job("doomed")
    assert stored is not None
    assert stored.status == Status.ABORTED
    assert stored.error == "changed my mind"
    with pytest.raises(JobNotFoundError):
        await queue.abort("never-existed")


async def test_group_key_one_at_a_time(make_queue: Any) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="g1", group_key="tenant-a")
    await queue.enqueue("echo", key="g2", group_key="tenant-a")
    await queue.enqueue("echo", key="free")
    claimed = await queue.backend.claim("w", 10, 30, time.time())
    assert sorted(r.key for r in claimed) == ["free", "g1"]
    assert await queue.backend.claim("w", 10, 30, time.time()) == []
    first = queue.deserialize(next(r for r in claimed if r.key == "g1"))
    await queue.finish(first, Status.COMPLETE)
    [second] = await queue.backend.claim("w", 10, 30, time.time())
    assert second.key == "g2"


async def test_count_and_info_with_pagination(make_queue: Any) -> None:
    queue = await make_queue()
    for i in range(25):
        await queue.enqueue("echo", key=f"j{i:02}")
    await queue.enqueue("echo", key="future", scheduled=time.time() + 60)
    await queue.dequeue()
    # SAQ's meanings: queued is due now, scheduled is not; incomplete is all of them.
    assert await queue.count("queued") == 24
    assert await queue.count("scheduled") == 1
    assert await queue.count("active") == 1
    assert await queue.count("incomplete") == 26
    info = await queue.info(jobs=True, offset=0, limit=10)
    assert (info["queued"], info["active"], info["scheduled"]) == (24, 1, 1)
    pages = [await queue.info(jobs=True, offset=o, limit=10) for o in (0, 10, 20)]
    keys = [j["key"] for page in pages for j in page["jobs"]]
    assert len(keys) == 26 and len(set(keys)) == 26
    with pytest.raises(ValueError, match="unknown count kind"):
        await queue.count("bogus")


async def test_iter_jobs_pages_through_everything(make_queue: Any) -> None:
    queue = await make_queue()
    for i in range(23):
        await queue.enqueue("echo", key=f"it{i}")
    done = await queue.dequeue()
    assert done is not None
    await queue.finish(done, Status.COMPLETE)
    keys = [job.key async for job in queue.iter_jobs(batch_size=5)]
    assert len(keys) == 23 and len(set(keys)) == 23
    queued = [j async for j in queue.iter_jobs(statuses=[Status.QUEUED], batch_size=4)]
    assert len(queued) == 22
    assert all(j.status == Status.QUEUED for j in queued)


async def test_enqueue_many_in_one_call(make_queue: Any) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="taken")
    jobs = [Job("echo", kwargs={"value": i}, key=f"m{i}") for i in range(50)]
    jobs.append(Job("echo", key="taken"))
    result = await queue.enqueue_many(jobs)
    assert sum(1 for j in result if j is not None) == 50
    assert result[-1] is None
    assert await queue.count("queued") == 51


async def test_unserializable_argument_names_it_and_stores_nothing(make_queue: Any) -> None:
    queue = await make_queue()
    with pytest.raises(SerializationError) as caught:
        await queue.enqueue("echo", key="bad", value=1, when=object())
    assert caught.value.argument == "when"
    assert "'when'" in str(caught.value) and "echo" in str(caught.value)
    assert await queue.job("bad") is None
    with pytest.raises(SerializationError):
        await queue.enqueue_many([Job("echo", key="ok1"), Job("echo", kwargs={"x": {1, 2}})])
    assert await queue.job("ok1") is None
    # A large batch (which a backend may send in chunks while serializing the rest) whose
    # last job fails: still nothing is stored.
    many = [Job("echo", kwargs={"value": i}) for i in range(2500)]
    many.append(Job("echo", kwargs={"x": {1, 2}}))
    with pytest.raises(SerializationError):
        await queue.enqueue_many(many)
    assert await queue.count("queued") == 0


async def test_queues_are_isolated_by_name(make_queue: Any) -> None:
    one = await make_queue("one")
    two = await make_queue("two")
    await one.enqueue("echo", key="shared-key", value=1)
    await two.enqueue("echo", key="shared-key", value=2)
    job_one, job_two = await one.dequeue(), await two.dequeue()
    assert job_one is not None and job_one.kwargs == {"value": 1}
    assert job_two is not None and job_two.kwargs == {"value": 2}
    assert await one.dequeue(timeout=0.1) is None
