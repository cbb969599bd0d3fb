"""Worker behaviours: results, retries, timeouts, aborts, hooks, ttl, waiting, shutdown."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conveyor.backends.base import RunFilter
from conveyor.errors import JobError
from conveyor.job import Job, Status, now_ms
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS

__all__ = [
    "test_abort_running_job_cancels_it",
    "test_apply_and_map_take_a_job",
    "test_apply_map_and_results",
    "test_batch_aborts_jobs_when_block_fails",
    "test_defaults_per_queue_and_worker_job_wins",
    "test_fifo_with_one_slot",
    "test_graceful_shutdown_requeues_what_outlives_grace",
    "test_hooks_and_ctx",
    "test_idle_worker_is_woken_not_polled",
    "test_lease_renewal_keeps_long_job_from_sweep",
    "test_listen_reports_changes",
    "test_map_return_exceptions",
    "test_progress_and_meta_visible_while_running",
    "test_retries_with_one_run_record_per_attempt",
    "test_retry_delay_is_respected",
    "test_sync_attempt_aborted_while_its_thread_runs_is_aborted_when_it_ends",
    "test_sync_attempt_past_its_timeout_holds_its_retry_until_its_thread_ends",
    "test_sync_function_runs_in_thread",
    "test_timeout_fails_the_job",
    "test_ttl_keep_delete_and_expire",
    "test_unknown_function_fails_job_and_worker_goes_on",
]


async def test_apply_map_and_results(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        assert await queue.apply("add", a=1, b=2, timeout=10) == 3
        assert await queue.map("add", [{"a": i, "b": i} for i in range(20)], timeout=10) == [
            2 * i for i in range(20)
        ]
        job = await queue.enqueue("echo", value="x")
        assert job is not None
        await job.refresh(until_complete=10)
        assert job.status == Status.COMPLETE and job.result == "x"
        assert job.completed >= job.started >= job.queued > 0
        with pytest.raises(JobError) as caught:
            await queue.apply("fail", message="nope", timeout=10)
        assert caught.value.job.status == Status.FAILED
        assert "nope" in (caught.value.job.error or "")


async def test_apply_and_map_take_a_job(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        assert await queue.apply(Job("add", kwargs={"a": 1, "b": 2}, key="whole"), timeout=10) == 3
        stored = await queue.job("whole")
        assert stored is not None and stored.status == Status.COMPLETE
        template = Job("add", kwargs={"a": 10}, timeout=5, retries=2)
        assert await queue.map(template, [{"b": 1}, {"b": 2}], timeout=10) == [11, 12]


async def test_map_return_exceptions(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        results = await queue.map(
            "fail_until", [{"succeed_on": 1}, {"succeed_on": 5}], timeout=10, return_exceptions=True
        )
    assert results[0] == 1
    assert isinstance(results[1], JobError)


async def test_batch_aborts_jobs_when_block_fails(make_queue: Any) -> None:
    queue = await make_queue()
    with pytest.raises(RuntimeError):
        async with queue.batch():
            await queue.enqueue("echo", key="b1")
            await queue.enqueue("echo", key="b2")
            raise RuntimeError("stop")
    for key in ("b1", "b2"):
        job = await queue.job(key)
        assert job is not None and job.status == Status.ABORTED


async def test_fifo_with_one_slot(make_queue: Any) -> None:
    queue = await make_queue()
    keys = [f"f{i}" for i in range(10)]
    for key in keys:
        await queue.enqueue("echo", key=key)
    async with running_worker(queue, TEST_FUNCTIONS, concurrency=1):
        jobs = await queue.wait(keys, timeout=10)
    starts = [job.started for job in jobs]
    assert starts == sorted(starts)


async def test_retries_with_one_run_record_per_attempt(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        job = await queue.enqueue("fail_until", succeed_on=3, retries=3, key="flaky")
        assert job is not None
        await job.refresh(until_complete=10)
        assert job.status == Status.COMPLETE and job.result == 3 and job.attempts == 3
        failing = await queue.enqueue("fail", message="always", retries=2, key="hopeless")
        assert failing is not None
        await failing.refresh(until_complete=10)
        assert failing.status == Status.FAILED and failing.attempts == 2
    runs, total = await queue.backend.list_runs(RunFilter(key="flaky"), 0, 10)
    assert total == 3
    by_attempt = {run.attempt: run for run in runs}
    assert by_attempt[1].status == "retried" and "attempt 1 fails" in (by_attempt[1].error or "")
    assert by_attempt[2].status == "retried" and "attempt 2 fails" in (by_attempt[2].error or "")
    assert by_attempt[3].status == "complete" and by_attempt[3].error is None
    runs, total = await queue.backend.list_runs(RunFilter(key="hopeless", status="failed"), 0, 10)
    assert total == 1 and runs[0].attempt == 2
    detail = queue.load(runs[0].detail)
    assert "ValueError: always" in detail["traceback"]


async def test_retry_delay_is_respected(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        job = await queue.enqueue("fail_until", succeed_on=2, retries=2, retry_delay=0.6)
        assert job is not None
        await job.refresh(until_complete=10)
    runs, _ = await queue.backend.list_runs(RunFilter(key=job.key), 0, 10)
    first, second = sorted(runs, key=lambda r: r.attempt)
    assert second.started_ms - first.finished_ms >= 550


async def test_timeout_fails_the_job(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        job = await queue.enqueue("sleep", seconds=30, timeout=1)
        assert job is not None
        await job.refresh(until_complete=10)
    assert job.status == Status.FAILED
    assert "timed out" in (job.error or "")


async def test_abort_running_job_cancels_it(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        job = await queue.enqueue("sleep", seconds=30, timeout=60, key="long")
        assert job is not None
        await wait_until(lambda: _status_is(queue, "long", Status.ACTIVE), message="job active")
        await queue.abort(job, "user cancelled")
        await job.refresh(until_complete=10)
    assert job.status == Status.ABORTED
    assert job.error == "user cancelled"
    runs, _ = await queue.backend.list_runs(RunFilter(key="long"), 0, 10)
    assert [r.status for r in runs] == ["aborted"]


async def _status_is(queue: Any, key: str, status: Status) -> bool:
    job = await queue.job(key)
    return job is not None and job.status == status


async def test_unknown_function_fails_job_and_worker_goes_on(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        bad = await queue.enqueue("no_such_task", retries=3)
        assert bad is not None
        await bad.refresh(until_complete=10)
        assert bad.status == Status.FAILED and bad.attempts == 1
        assert "no_such_task" in (bad.error or "") and "echo" in (bad.error or "")
        assert await queue.apply("echo", value="still alive", timeout=10) == "still alive"


async def test_hooks_and_ctx(make_queue: Any) -> None:
    queue = await make_queue()
    seen: dict[str, Any] = {"before": [], "after": []}

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["db"] = "connection"

    def before(ctx: dict[str, Any]) -> None:  # sync hooks work too
        seen["before"].append(ctx["job"].key)

    async def after(ctx: dict[str, Any]) -> None:
        seen["after"].append((ctx["job"].key, ctx["job"].status, repr(ctx["exception"])))

    async def shutdown(ctx: dict[str, Any]) -> None:
        seen["shutdown"] = ctx["db"]

    async def uses_ctx(ctx: dict[str, Any]) -> dict[str, Any]:
        return {
            "db": ctx["db"],
            "has_worker": ctx["worker"] is not None,
            "queue": ctx["queue"].name,
            "key": ctx["job"].key,
        }

    settings = {
        "startup": startup,
        "before_process": before,
        "after_process": [after],
        "shutdown": shutdown,
    }
    async with running_worker(queue, [*TEST_FUNCTIONS, uses_ctx], **settings):
        job = await queue.enqueue("uses_ctx", key="c1")
        assert job is not None
        await job.refresh(until_complete=10)
        failing = await queue.enqueue("fail", key="c2")
        assert failing is not None
        await failing.refresh(until_complete=10)
    assert job.result == {"db": "connection", "has_worker": True, "queue": queue.name, "key": "c1"}
    assert seen["before"] == ["c1", "c2"]
    assert seen["after"][0] == ("c1", Status.COMPLETE, "None")
    assert seen["after"][1][1] == Status.FAILED and "ValueError" in seen["after"][1][2]
    assert seen["shutdown"] == "connection"


async def test_sync_function_runs_in_thread(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        result = await queue.apply("sync_echo", value=5, timeout=10)
    assert result == {"value": 5, "main_thread": False}


class Stubborn:
    """A sync task whose first attempt blocks until :attr:`release` is set, ignoring its
    timeout and aborts (as a thread must); it records the attempts that ran, how many ran
    at once, and when the first one's thread ended."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.attempts: list[int] = []
        self.running = 0
        self.most = 0
        self.first_ended_ms = 0
        self.began_ms: dict[int, int] = {}

    def run(self, ctx: dict[str, Any]) -> int:
        attempt: int = ctx["job"].attempts
        with self.lock:
            self.began_ms[attempt] = now_ms()
            self.attempts.append(attempt)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if attempt == 1:
                self.release.wait(30)
            return attempt
        finally:
            with self.lock:
                self.running -= 1
                if attempt == 1:
                    self.first_ended_ms = now_ms()

    @property
    def first_running(self) -> bool:
        """The first attempt's thread is still running."""
        with self.lock:
            return self.running > 0 and self.first_ended_ms == 0


async def _hung_in_record(queue: Any, key: str) -> dict[str, Any] | None:
    for payload in (await queue.backend.workers()).values():
        for hung in queue.load(payload).get("hung") or ():
            if hung["key"] == key:
                return dict(hung)
    return None


async def test_sync_attempt_past_its_timeout_holds_its_retry_until_its_thread_ends(
    make_queue: Any,
) -> None:
    queue = await make_queue()
    other = await make_queue()
    stubborn = Stubborn()
    functions = [*TEST_FUNCTIONS, ("stubborn", stubborn.run)]
    lease_s = 0.5
    async with (
        running_worker(queue, functions, lease_s=lease_s) as first,
        running_worker(other, functions, lease_s=lease_s) as second,
    ):
        try:
            job = await queue.enqueue("stubborn", key="stubborn", timeout=1, retries=2)
            assert job is not None

            def hung() -> Any:
                return [h for w in (first, second) for h in w.hung if h.key == "stubborn"]

            [record] = await wait_until(hung, message="the timed-out attempt listed as hung")
            assert record.function == "stubborn" and stubborn.first_running
            listed = await wait_until(
                lambda: _hung_in_record(queue, "stubborn"), message="hung in the worker record"
            )
            assert listed["function"] == "stubborn" and listed["since"] == record.since
            # Several leases long: a lease left to expire would be recovered by either
            # worker's sweep, and a retry written at the timeout would have started.
            await wait_until(
                lambda: time.time() > record.since + 3 * lease_s, message="3 leases passed"
            )
            assert await queue.apply("echo", value="other work runs", timeout=10)
            stored = await queue.job("stubborn")
            assert stored is not None and stubborn.first_running
            assert stored.status == Status.ACTIVE and stored.attempts == 1
            assert stubborn.attempts == [1]
        finally:
            stubborn.release.set()
        await job.refresh(until_complete=10)
        await wait_until(lambda: not hung(), message="no longer hung once its thread ended")
    assert job.status == Status.COMPLETE and job.result == 2 and job.attempts == 2
    assert stubborn.attempts == [1, 2] and stubborn.most == 1
    runs, _ = await queue.backend.list_runs(RunFilter(key="stubborn"), 0, 10)
    by_attempt = {run.attempt: run for run in runs}
    assert by_attempt[1].status == "retried"
    assert by_attempt[1].error == "job timed out after 1s"
    assert by_attempt[2].status == "complete"
    # The retry's code began after the first thread ended. (Not its run's started_ms: that
    # is the claim's time, read just before the claim query, which may be the very
    # millisecond the thread ended in, before it.)
    assert stubborn.began_ms[2] >= stubborn.first_ended_ms


async def test_sync_attempt_aborted_while_its_thread_runs_is_aborted_when_it_ends(
    make_queue: Any,
) -> None:
    queue = await make_queue()
    stubborn = Stubborn()
    async with running_worker(queue, [*TEST_FUNCTIONS, ("stubborn", stubborn.run)]) as worker:
        try:
            job = await queue.enqueue("stubborn", key="stubborn", timeout=60, retries=3)
            assert job is not None
            await wait_until(lambda: stubborn.first_running, message="first attempt running")
            await queue.abort(job, "user cancelled")
            await wait_until(lambda: worker.hung, message="the aborted attempt listed as hung")
            assert await queue.apply("echo", value="other work runs", timeout=10)
            stored = await queue.job("stubborn")
            assert stored is not None and stubborn.first_running
            assert stored.status == Status.ABORTING and stored.attempts == 1
        finally:
            stubborn.release.set()
        await job.refresh(until_complete=10)
    assert job.status == Status.ABORTED and job.error == "user cancelled"
    assert job.attempts == 1 and stubborn.attempts == [1]
    runs, _ = await queue.backend.list_runs(RunFilter(key="stubborn"), 0, 10)
    assert [r.status for r in runs] == ["aborted"]
    assert runs[0].finished_ms >= stubborn.first_ended_ms


async def test_progress_and_meta_visible_while_running(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS):
        job = await queue.enqueue("progress", steps=4, pause=0.2, key="p")
        assert job is not None

        async def midway() -> bool:
            stored = await queue.job("p")
            return stored is not None and 0 < stored.progress < 1 and "step" in stored.meta

        await wait_until(midway, message="progress reported")
        await job.refresh(until_complete=10)
    assert job.progress == 1.0 and job.meta["step"] == 4 and job.result == "done"


async def test_listen_reports_changes(make_queue: Any) -> None:
    queue = await make_queue()
    statuses: list[Status] = []

    def callback(key: str, status: Status) -> bool:
        statuses.append(status)
        return status == Status.COMPLETE

    job = await queue.enqueue("sleep", seconds=0.3, key="l1")
    assert job is not None
    async with running_worker(queue, TEST_FUNCTIONS):
        await queue.listen(["l1"], callback, timeout=10)
    assert statuses[0] in (Status.QUEUED, Status.ACTIVE) and statuses[-1] == Status.COMPLETE


async def test_ttl_keep_delete_and_expire(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS) as worker:
        keep = await queue.enqueue("echo", key="keep", ttl=0)
        gone = await queue.enqueue("echo", key="gone", ttl=-1)
        short = await queue.enqueue("echo", key="short", ttl=1)
        assert keep and gone and short
        await keep.refresh(until_complete=10)
        await short.refresh(until_complete=10)
        await wait_until(lambda: _missing(queue, "gone"), message="ttl=-1 job deleted")
        await wait_until(lambda: _missing(queue, "short"), message="ttl=1 job expired")
        assert worker is not None
    assert await queue.job("keep") is not None


async def _missing(queue: Any, key: str) -> bool:
    return await queue.job(key) is None


async def test_defaults_per_queue_and_worker_job_wins(make_queue: Any) -> None:
    queue = await make_queue(defaults={"retries": 3})
    async with running_worker(queue, TEST_FUNCTIONS, defaults={"timeout": 1, "retries": 9}):
        from_queue = await queue.enqueue("fail_until", succeed_on=3)
        explicit = await queue.enqueue("fail_until", succeed_on=3, retries=1)
        from_worker = await queue.enqueue("sleep", seconds=30)
        assert from_queue and explicit and from_worker
        for job in (from_queue, explicit, from_worker):
            # A bound on the wait, not a timing: three attempts with their retry delays
            # through an HTTP proxy took over 10 s once on a loaded CI machine.
            await job.refresh(until_complete=30)
    assert from_queue.status == Status.COMPLETE and from_queue.attempts == 3
    assert explicit.status == Status.FAILED and explicit.attempts == 1
    assert from_worker.status == Status.FAILED and "timed out after 1s" in (from_worker.error or "")


async def test_idle_worker_is_woken_not_polled(make_queue: Any) -> None:
    queue = await make_queue()
    # An idle wait of 60 s: the job can only finish in time through a wake-up notification.
    async with running_worker(queue, TEST_FUNCTIONS, dequeue_timeout=60) as worker:
        await wait_until(lambda: worker.idle, message="worker idle")
        result = await queue.apply("echo", value="woken", timeout=20)
    assert result == "woken"


async def test_lease_renewal_keeps_long_job_from_sweep(make_queue: Any) -> None:
    queue = await make_queue()
    other = await make_queue()
    async with (
        running_worker(queue, TEST_FUNCTIONS, lease_s=0.5),
        running_worker(other, TEST_FUNCTIONS, lease_s=0.5, concurrency=1),
    ):
        job = await queue.enqueue("sleep", seconds=2, value="once", retries=3)
        assert job is not None
        await job.refresh(until_complete=15)
    assert job.status == Status.COMPLETE, job.error
    assert job.attempts == 1 and job.result == "once"


async def test_graceful_shutdown_requeues_what_outlives_grace(make_queue: Any) -> None:
    queue = await make_queue()
    async with running_worker(queue, TEST_FUNCTIONS, shutdown_grace_period_s=1.0):
        quick = await queue.enqueue("sleep", seconds=0.3, value="quick", key="quick")
        slow = await queue.enqueue("sleep", seconds=30, timeout=60, value="slow", key="slow")
        assert quick and slow
        await wait_until(lambda: _status_is(queue, "quick", Status.ACTIVE), message="quick active")
        await wait_until(lambda: _status_is(queue, "slow", Status.ACTIVE), message="slow active")
        started = time.monotonic()
    assert time.monotonic() - started < 10
    done = await queue.job("quick")
    assert done is not None and done.status == Status.COMPLETE and done.result == "quick"
    requeued = await queue.job("slow")
    assert requeued is not None and requeued.status == Status.QUEUED
    assert requeued.error == "worker shut down"
