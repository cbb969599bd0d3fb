"""Ownership: one owner per job, and every write about an attempt fenced by its lease's token.

A backend that forgets to check the token in the same atomic step as the write fails here:
a stale owner's finish, update or renewal must change nothing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest

from conveyor.backends.base import DetectsDeadOwners, Lease, RunFilter, Transition
from conveyor.errors import LeaseLostError
from conveyor.job import Job, Status
from conveyor.queue import Queue
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS

__all__ = [
    "test_a_lease_nobody_vouched_for_outlives_its_dead_claimers_process",
    "test_abort_of_a_job_waiting_for_its_retry_keeps_the_retried_run",
    "test_an_expired_lease_nobody_took_is_still_the_owners",
    "test_claim_orders_by_due_time",
    "test_lost_lease_cancels_the_job_and_its_outcome_is_not_written",
    "test_recover_gives_a_new_token_and_refuses_the_dead_owner",
    "test_renew_reports_aborting_and_lost_leases",
    "test_stale_finish_does_not_touch_a_job_enqueued_again_with_the_same_key",
    "test_the_same_finish_twice_is_applied_once",
    "test_unstorable_values_fail_the_job_and_free_the_slot",
]

LEASE_S = 30.0


async def _claim(queue: Queue, worker_id: str = "w1", now: float | None = None) -> Job:
    [row] = await queue.backend.claim(worker_id, 1, LEASE_S, time.time() if now is None else now)
    assert row.token, "claim must return a fencing token"
    job = queue.deserialize(row)
    assert job is not None and job.lease_token == row.token
    return job


async def _recover(queue: Queue, worker_id: str = "w2") -> list[Job]:
    """Take over every lease as if they had all expired (a clock past every lease)."""
    rows = await queue.backend.recover(worker_id, 100, LEASE_S, time.time() + 10 * LEASE_S)
    jobs = [queue.deserialize(row) for row in rows]
    return [job for job in jobs if job is not None]


def _complete(queue: Queue, job: Job, result: Any) -> Transition:
    return queue.transition(job, Status.COMPLETE, result=result)


async def test_recover_gives_a_new_token_and_refuses_the_dead_owner(make_queue: Any) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="k", value=1, retries=2)
    stale = await _claim(queue)
    [recovered] = await _recover(queue)
    assert recovered.lease_token and recovered.lease_token != stale.lease_token
    # The earlier owner comes back: its finish and its update change nothing.
    assert await queue.backend.finish([_complete(queue, stale, "stale")]) == [False]
    with pytest.raises(LeaseLostError):
        await queue.update(stale, progress=0.5)
    stored = await queue.job("k")
    assert stored is not None and stored.status == Status.ACTIVE and stored.progress == 0
    # The new owner's writes go through.
    await queue.update(recovered, progress=0.25)
    assert await queue.backend.finish([queue.recovery_transition(recovered)]) == [True]
    stored = await queue.job("k")
    assert stored is not None and stored.status == Status.QUEUED and stored.result is None
    [run] = (await queue.backend.list_runs(_runs_of("k"), 0, 10))[0]
    assert run.status == "retried" and run.error == queue.swept_error_message


async def test_stale_finish_does_not_touch_a_job_enqueued_again_with_the_same_key(
    make_queue: Any,
) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="k", value="old")
    stale = await _claim(queue)
    [recovered] = await _recover(queue)
    await queue.backend.finish([queue.transition(recovered, Status.FAILED, error="died")])
    assert await queue.enqueue("echo", key="k", value="new") is not None
    # The first owner's late outcome must not mark the new job complete.
    with pytest.raises(LeaseLostError):
        await queue.finish(stale, Status.COMPLETE, result="old")
    fresh = await queue.job("k")
    assert fresh is not None and fresh.status == Status.QUEUED
    assert fresh.kwargs == {"value": "new"} and fresh.result is None
    claimed = await _claim(queue, "w3")
    assert claimed.kwargs == {"value": "new"}
    assert claimed.lease_token not in (stale.lease_token, recovered.lease_token)


async def test_the_same_finish_twice_is_applied_once(make_queue: Any) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="k", value=1)
    job = await _claim(queue)
    transition = _complete(queue, job, 1)
    assert await queue.backend.finish([transition]) == [True]
    assert await queue.backend.finish([transition]) == [False]
    # Unfenced writes (no lease: an admin's change) are still applied.
    await queue.enqueue("echo", key="other", value=2)
    assert await queue.backend.update("other", queue.serialize(Job("echo", key="other"))) is True


async def test_renew_reports_aborting_and_lost_leases(make_queue: Any) -> None:
    queue = await make_queue()
    for key in ("kept", "aborted", "taken"):
        await queue.enqueue("echo", key=key)
    jobs = {job.key: job for job in [await _claim(queue) for _ in range(3)]}
    await queue.abort("aborted", error="stop it")
    now = time.time()
    # Take "taken" over: expire only its lease by renewing the others far ahead first.
    renewed = await queue.backend.renew(
        "w1",
        [Lease(k, str(jobs[k].lease_token)) for k in ("kept", "aborted")],
        100 * LEASE_S,
        now,
    )
    assert renewed.lost == [] and renewed.aborting == ["aborted"]
    [taken] = await _recover(queue)
    assert taken.key == "taken"
    leases = [Lease(job.key, str(job.lease_token)) for job in jobs.values()]
    renewal = await queue.backend.renew("w1", leases, LEASE_S, now)
    assert renewal.lost == ["taken"]
    assert renewal.aborting == ["aborted"]
    # The lost lease was not renewed: the new owner still holds the job.
    await queue.update(taken, progress=0.5)


async def test_an_expired_lease_nobody_took_is_still_the_owners(make_queue: Any) -> None:
    queue = await make_queue()
    await queue.enqueue("echo", key="k")
    job = await _claim(queue, now=time.time() - 10 * LEASE_S)  # its lease expired long ago
    lease = Lease("k", str(job.lease_token))
    renewal = await queue.backend.renew("w1", [lease], LEASE_S, time.time())
    assert renewal.lost == [] and renewal.aborting == []
    # Renewed: nobody can take it now.
    assert await queue.backend.recover("w2", 100, LEASE_S, time.time()) == []
    await queue.finish(job, Status.COMPLETE, result="mine")
    stored = await queue.job("k")
    assert stored is not None and stored.status == Status.COMPLETE and stored.result == "mine"


async def test_claim_orders_by_due_time(make_queue: Any) -> None:
    """A job that became due, or a retry, is not overtaken by jobs enqueued after it."""
    queue = await make_queue()
    due = time.time() + 0.3
    await queue.enqueue("echo", key="scheduled", scheduled=due)
    await queue.enqueue("echo", key="retried")
    first = await _claim(queue)
    assert first.key == "retried"
    await queue.retry(first)  # no retry delay: due at once
    await wait_until(lambda: time.time() > due + 0.05, message="scheduled job due")
    for n in range(3):
        await queue.enqueue("echo", key=f"later-{n}")
    rows = await queue.backend.claim("w1", 10, LEASE_S, time.time())
    assert [row.key for row in rows] == ["retried", "scheduled", "later-0", "later-1", "later-2"]


async def test_lost_lease_cancels_the_job_and_its_outcome_is_not_written(
    make_queue: Any,
) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS, lease_s=LEASE_S) as worker:
        await queue.enqueue("sleep", key="k", seconds=30, value="stale", timeout=60)
        await wait_until(lambda: "k" in worker._running, message="job running")
        # Another worker takes the job over, as after this worker's loop stalled.
        [recovered] = await _recover(queue, "thief")
        await wait_until(lambda: worker.stats["lost"] == 1, message="lease loss seen")
        await wait_until(lambda: "k" not in worker._running, message="job cancelled")
    stored = await queue.job("k")
    assert stored is not None and stored.status == Status.ACTIVE
    assert stored.worker_id == "thief" and stored.result is None
    await queue.finish(recovered, Status.COMPLETE, result="thief's")
    stored = await queue.job("k")
    assert stored is not None and stored.result == "thief's"


async def test_abort_of_a_job_waiting_for_its_retry_keeps_the_retried_run(
    make_queue: Any,
) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        await queue.enqueue("fail", key="k", retries=3, retry_delay=60)
        await wait_until(lambda: _status_is(queue, "k", Status.QUEUED, attempts=1))
        await queue.abort("k", error="no more")
    stored = await queue.job("k")
    assert stored is not None and stored.status == Status.ABORTED
    runs, _ = await queue.backend.list_runs(_runs_of("k"), 0, 10)
    assert [run.status for run in runs] == ["retried"]


async def test_unstorable_values_fail_the_job_and_free_the_slot(make_queue: Any) -> None:
    """A result whose ``!=`` raises, an unserializable ``meta`` value, and a log line or
    error with a lone surrogate and a NUL: each job ends, and the worker goes on."""
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS, concurrency=1) as worker:
        for where in ("result", "meta", "log", "error"):
            await queue.enqueue("unstorable", key=where, where=where)
        await queue.enqueue("echo", key="after", value="fine")
        jobs = await queue.wait(["result", "meta", "log", "error", "after"], timeout=20)
        writer = worker._writer
        assert writer is not None
        # Stored, so the writer lets go of them once its call returns: nothing stays stuck.
        await wait_until(lambda: writer.pending == 0, message="nothing left to write")
    by_key = {job.key: job for job in jobs}
    for where in ("result", "meta"):
        job = by_key[where]
        assert job.status == Status.FAILED
        assert job.error and "'unstorable'" in job.error and where in job.error
    assert by_key["log"].status == Status.COMPLETE
    assert by_key["error"].status == Status.FAILED
    assert by_key["error"].error and "report-\\udcff.csv" in by_key["error"].error
    assert by_key["after"].status == Status.COMPLETE and by_key["after"].result == "fine"
    [run] = (await queue.backend.list_runs(_runs_of("log"), 0, 1))[0]
    messages = [line.message for line in await queue.backend.read_logs(run.run_id, 0, 10)]
    assert any("report-\\udcff.csv\\x00" in message for message in messages), messages


# Claims one job vouched for and one not, prints "<vouch> <key>" for each, then waits to be
# killed: its process is the owner that dies.
_CLAIMER = """
import asyncio, sys, time
from conveyor.queue import Queue

async def main(url, name, lease_s):
    queue = Queue.from_url(url, name=name)
    await queue.connect()
    for vouch in (True, False):
        [row] = await queue.backend.claim(f"w-{vouch}", 1, lease_s, time.time(), vouch=vouch)
        print(vouch, row.key, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


async def test_a_lease_nobody_vouched_for_outlives_its_dead_claimers_process(
    make_queue: Any, conveyor_url: str
) -> None:
    """A lease claimed with ``vouch=False`` (as the HTTP proxy claims for remote workers)
    is never ended by :meth:`~conveyor.backends.base.DetectsDeadOwners.expire_dead_leases`
    when the claiming process dies; the one claimed with ``vouch=True`` beside it is."""
    queue = await make_queue("vouch")
    if not queue.backend.capabilities.cross_process:
        pytest.skip(f"the {queue.backend.name} backend declares cross_process=False")
    backend = queue.backend
    if not isinstance(backend, DetectsDeadOwners):
        pytest.skip(f"the {queue.backend.name} backend cannot tell that a worker died")
    for key in ("a", "b"):
        await queue.enqueue("echo", key=key)
    claimer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CLAIMER, conveyor_url, "vouch", str(LEASE_S),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert claimer.stdout is not None
        lines = [await asyncio.wait_for(claimer.stdout.readline(), 30) for _ in range(2)]
        keys = dict(line.decode().split() for line in lines)
        assert sorted(keys) == ["False", "True"], lines
    finally:
        claimer.kill()
        await claimer.wait()
    taken: list[str] = []

    async def sweep() -> bool:
        await backend.expire_dead_leases(time.time())
        rows = await queue.backend.recover("sweeper", 10, LEASE_S, time.time())
        taken.extend(row.key for row in rows)
        return keys["True"] in taken

    # The control: the vouched lease of the dead process ends within a few sweeps.
    await wait_until(sweep, timeout=20, interval=0.1, message="the vouched lease ended")
    assert taken == [keys["True"]]
    stored = await queue.job(keys["False"])
    assert stored is not None and stored.status == Status.ACTIVE
    assert stored.worker_id == "w-False"
    # It ends by expiry only (the recovered control's lease has expired by then as well).
    rows = await queue.backend.recover("later", 10, LEASE_S, time.time() + 2 * LEASE_S)
    assert keys["False"] in [row.key for row in rows]


def _runs_of(key: str) -> RunFilter:
    return RunFilter(key=key)


async def _status_is(queue: Queue, key: str, status: Status, attempts: int | None = None) -> bool:
    job = await queue.job(key)
    return (
        job is not None and job.status == status and (attempts is None or job.attempts == attempts)
    )
