"""The admin service on every backend: queries, filters, logs, task introspection, actions."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.admin import Admin, AdminError, Health, JobStateError, RunNotFoundError
from conveyor.cron import CronJob
from conveyor.errors import (
    ArgumentsError,
    ConfigurationError,
    JobNotFoundError,
    UnknownFunctionError,
    UnknownQueueError,
)
from conveyor.job import Status
from conveyor.observability.retention import (
    purge_run_history,
    purge_runs_older_than,
    retention_cron_job,
)
from conveyor.queue import Queue
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS, add, echo
from conveyor.worker.scheduler import CronScheduler

__all__ = [
    "test_admin_abort_queued_job_and_purge",
    "test_admin_available_jobs_and_argument_checks",
    "test_admin_cron_lists_fire_times_and_the_schedules_latest_run",
    "test_admin_health_needs_a_live_worker_on_every_queue",
    "test_admin_jobs_by_status_paginated_with_totals",
    "test_admin_logs_cursor_level_and_search",
    "test_admin_over_several_settings",
    "test_admin_overview_runs_and_detail",
    "test_admin_retry_failed_job_keeps_key_and_history",
    "test_admin_throughput",
    "test_retention_purges_old_runs_in_batches",
]

noisy_logger = logging.getLogger("conveyor.testing.admin")


async def noisy(ctx: dict[str, Any], *, count: int) -> int:
    """Log ``count`` INFO lines, then a WARNING and an ERROR."""
    for i in range(count):
        noisy_logger.info("line %d", i)
    noisy_logger.warning("careful: disk at %d%%", 91)
    noisy_logger.error("broken pipe while writing")
    return count


async def typed(
    ctx: dict[str, Any],
    *,
    count: int,
    name: str = "x",
    ratio: float | None = None,
    tags: list[str] | None = None,
    anything: Any = None,
) -> None:
    """A task with annotated parameters.

    Used to check signature introspection.
    """


class Handle:
    """Shaped like a task handle: a name, the function, and the job options it sets."""

    def __init__(self, name: str, fn: Any, **job_options: Any) -> None:
        self.name, self.fn, self.job_options = name, fn, job_options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


FUNCTIONS = [*TEST_FUNCTIONS, noisy, typed, Handle("slow_typed", typed, timeout=300)]


def admin_for(queue: Queue, **kwargs: Any) -> Admin:
    return Admin.from_settings({"queue": queue, "functions": FUNCTIONS, **kwargs})


async def _claim_and_finish(queue: Queue, status: Status, **finish: Any) -> str:
    """Run one queued job without a worker; return its run id."""
    job = await queue.dequeue()
    assert job is not None
    await queue.finish(job, status, **finish)
    return str(job.meta["run_id"])


async def test_admin_overview_runs_and_detail(make_queue: Any) -> None:
    queue = await make_queue()
    admin = admin_for(queue)
    async with running_worker(queue, FUNCTIONS) as worker:
        jobs = [await queue.enqueue("echo", value=i) for i in range(3)]
        jobs.append(await queue.enqueue("fail", message="disk full on /var"))
        jobs.append(await queue.enqueue("fail", message="timeout talking to db"))
        for job in jobs:
            assert job is not None
            await job.refresh(until_complete=10)
        await queue.enqueue("echo", key="later", scheduled=time.time() + 3600)
        overview = await wait_until(
            lambda: _overview_with_worker(admin, worker.id), message="the worker's record"
        )
    assert (overview.completed, overview.failed) == (3, 2)
    assert (overview.queued, overview.running, overview.scheduled) == (0, 0, 1)
    assert json.loads(json.dumps(overview.to_dict()))["completed"] == 3

    page = await admin.runs(limit=2)
    assert page.total == 5 and len(page.runs) == 2
    seen = [
        run.run_id
        for offset in (0, 2, 4)
        for run in (await admin.runs(offset=offset, limit=2)).runs
    ]
    assert len(seen) == len(set(seen)) == 5
    everything = (await admin.runs(limit=10)).runs
    starts = [r.started or 0.0 for r in everything]
    assert starts == sorted(starts, reverse=True)

    failed = await admin.runs(status="failed")
    assert failed.total == 2 and {r.function for r in failed.runs} == {"fail"}
    assert (await admin.runs(function="echo")).total == 3
    [hit] = (await admin.runs(q="DISK FULL")).runs
    assert hit.error is not None and "disk full" in hit.error and hit.status == "failed"
    assert (await admin.runs(since=time.time() + 60)).total == 0
    with pytest.raises(AdminError, match="unknown run status"):
        await admin.runs(status="exploded")

    detail = await admin.run(hit.run_id)
    assert detail.run.key == hit.key and detail.kwargs == {"message": "disk full on /var"}
    assert detail.traceback is not None and "ValueError" in detail.traceback
    assert detail.trigger == "enqueued" and detail.job_status == "failed"
    assert [a.run_id for a in detail.attempts] == [hit.run_id]
    assert detail.run.duration_s is not None and detail.run.duration_s >= 0
    complete = (await admin.runs(function="echo", limit=1)).runs[0]
    assert (await admin.run(complete.run_id)).result == (await admin.run(complete.run_id)).kwargs[
        "value"
    ]
    with pytest.raises(RunNotFoundError):
        await admin.run("no-such-run")


async def _overview_with_worker(admin: Admin, worker_id: str) -> Any:
    overview = await admin.overview()
    return overview if any(w.id == worker_id for w in overview.workers) else None


async def test_admin_logs_cursor_level_and_search(make_queue: Any) -> None:
    queue = await make_queue()
    admin = admin_for(queue)
    async with running_worker(queue, FUNCTIONS):
        job = await queue.enqueue("noisy", count=7)
        assert job is not None
        await job.refresh(until_complete=10)
    run_id = str(job.meta["run_id"])

    messages, cursor, pages = [], 0, 0
    while True:
        page = await admin.logs(run_id, cursor=cursor, limit=3)
        messages += [line.message for line in page.lines]
        assert page.next_cursor >= cursor
        cursor, pages = page.next_cursor, pages + 1
        if not page.more:
            break
    assert messages == [f"line {i}" for i in range(7)] + [
        "careful: disk at 91%",
        "broken pipe while writing",
    ]
    assert pages == 3 and page.run_status == "complete"

    warnings = await admin.logs(run_id, level="warning")
    assert [line.level for line in warnings.lines] == ["WARNING", "ERROR"]
    assert warnings.lines[0].extra["logger"] == "conveyor.testing.admin"
    [found] = (await admin.logs(run_id, q="BROKEN")).lines
    assert found.level == "ERROR"
    # A filter that matches only the last line still moves the cursor past what it read.
    first = await admin.logs(run_id, level="error", limit=1)
    assert [line.message for line in first.lines] == ["broken pipe while writing"]
    rest = await admin.logs(run_id, cursor=first.next_cursor, level="error")
    assert rest.lines == [] and not rest.more and rest.next_cursor == first.next_cursor
    nothing = await admin.logs(run_id, q="no such text")
    assert nothing.lines == [] and nothing.next_cursor == cursor and not nothing.more
    with pytest.raises(AdminError, match="unknown log level"):
        await admin.logs(run_id, level="loud")
    with pytest.raises(RunNotFoundError):
        await admin.logs("no-such-run")


async def test_admin_available_jobs_and_argument_checks(make_queue: Any) -> None:
    queue = await make_queue()
    cron = CronJob(echo, cron="*/5 * * * *", timeout=77, kwargs={"value": 1})
    admin = admin_for(queue, cron_jobs=[cron], cron_tz="Europe/Berlin")
    available = {job.name: job for job in await admin.available_jobs()}
    assert set(available) >= {"echo", "fail", "noisy", "typed"}
    typed_job = available["typed"]
    assert typed_job.doc is not None and typed_job.doc.startswith("A task with annotated")
    params = {p.name: p for p in typed_job.parameters}
    assert list(params) == ["count", "name", "ratio", "tags", "anything"]
    assert params["count"].required and params["count"].annotation == "int"
    assert params["name"].default == "x" and not params["name"].required
    assert params["ratio"].annotation == "float | None" and params["ratio"].kind == "keyword_only"
    assert typed_job.category == "function" and typed_job.cron is None
    echo_job = available["echo"]
    assert (echo_job.category, echo_job.cron, echo_job.tz, echo_job.timeout) == (
        "cron",
        "*/5 * * * *",
        "Europe/Berlin",
        77,
    )
    assert echo_job.schedules[0].next_run > time.time()
    json.dumps([job.to_dict() for job in available.values()])

    with pytest.raises(ArgumentsError) as caught:
        await admin.enqueue("typed", {"count": "three", "bogus": 1, "ratio": 0.5})
    assert set(caught.value.errors) == {"count", "bogus"}
    assert "expected int" in caught.value.errors["count"]
    with pytest.raises(ArgumentsError) as missing:
        await admin.check_arguments("typed", {"tags": ["a"], "anything": object()})
    assert set(missing.value.errors) == {"count"}
    await admin.check_arguments("typed", {"count": 3, "ratio": 2, "tags": None})
    with pytest.raises(UnknownFunctionError, match="typed"):
        await admin.enqueue("nope", {})
    assert (await admin.overview()).queued == 0

    at = time.time() + 3600
    key = await admin.enqueue("echo", {"value": "hi"}, scheduled_at=at, actor="alice")
    stored = await queue.job(key)
    assert stored is not None and stored.status == Status.QUEUED
    assert stored.kwargs == {"value": "hi"} and stored.timeout == 77
    assert stored.meta["trigger"] == "console" and stored.meta["actor"] == "alice"
    assert abs(float(stored.scheduled) - at) < 1
    assert (await admin.overview()).scheduled == 1

    assert available["slow_typed"].timeout == 300
    assert [p.name for p in available["slow_typed"].parameters] == list(params)
    slow = await queue.job(await admin.enqueue("slow_typed", {"count": 1}))
    assert slow is not None and slow.timeout == 300 and slow.function == "slow_typed"


async def test_admin_retry_failed_job_keeps_key_and_history(make_queue: Any) -> None:
    queue = await make_queue()
    admin = admin_for(queue)
    async with running_worker(queue, FUNCTIONS):
        key = await admin.enqueue("fail", {"message": "flaky"}, actor="bob")
        failed = await queue.job(key)
        assert failed is not None
        await failed.refresh(until_complete=10)
        assert failed.status == Status.FAILED
        assert await admin.retry(key, actor="bob") == key
        await wait_until(lambda: _runs_finished(admin, key, 2), message="the retried run")
        waiting = await queue.enqueue("echo", key="waiting", scheduled=time.time() + 3600)
        assert waiting is not None
        with pytest.raises(JobStateError, match="only failed or aborted"):
            await admin.retry("waiting")

        gone = await queue.enqueue("fail", key="gone", ttl=-1, message="expired row")
        assert gone is not None
        await wait_until(lambda: _runs_finished(admin, "gone", 1), message="the first run")
        assert await queue.job("gone") is None
        await admin.retry("gone")
        await wait_until(lambda: _runs_finished(admin, "gone", 2), message="the rebuilt run")
    runs = (await admin.runs(key=key)).runs
    assert [r.status for r in runs] == ["failed", "failed"]
    detail = await admin.run(runs[0].run_id)
    assert [a.run_id for a in detail.attempts] == [runs[1].run_id, runs[0].run_id]
    assert detail.kwargs == {"message": "flaky"} and detail.trigger == "console"
    gone_runs = (await admin.runs(key="gone")).runs
    assert (await admin.run(gone_runs[0].run_id)).kwargs == {"message": "expired row"}
    with pytest.raises(JobNotFoundError):
        await admin.retry("never-existed")


async def _runs_finished(admin: Admin, key: str, count: int) -> bool:
    runs = (await admin.runs(key=key)).runs
    return len(runs) == count and all(r.status != "running" for r in runs)


async def test_admin_abort_queued_job_and_purge(make_queue: Any) -> None:
    queue = await make_queue()
    admin = admin_for(queue)
    key = await admin.enqueue("echo", {"value": 1})
    assert await admin.abort(key, "not needed", actor="carol") == "aborted"
    aborted = await queue.job(key)
    assert aborted is not None and aborted.status == Status.ABORTED
    assert aborted.error == "not needed"
    assert await queue.dequeue(timeout=0.1) is None
    with pytest.raises(JobStateError):
        await admin.abort(key, "again")
    with pytest.raises(JobNotFoundError):
        await admin.abort("missing", "x")

    await queue.enqueue("echo", value=1)
    await queue.enqueue("echo", value=2)
    await _claim_and_finish(queue, Status.COMPLETE, result=1)
    await _claim_and_finish(queue, Status.COMPLETE, result=2)
    await queue.enqueue("sleep", seconds=1)
    running = await queue.dequeue()
    assert running is not None
    running_detail = await admin.run(str(running.meta["run_id"]))
    assert running_detail.run.status == "running" and running_detail.kwargs == {"seconds": 1}
    assert await admin.purge(3600) == 0
    assert await admin.purge(0, actor="carol") == 2
    remaining = await admin.runs()
    assert [r.status for r in remaining.runs] == ["running"]


async def test_admin_throughput(make_queue: Any) -> None:
    queue = await make_queue()
    admin = admin_for(queue)
    for value in range(3):
        await queue.enqueue("echo", value=value)
        await _claim_and_finish(queue, Status.COMPLETE, result=value)
    await queue.enqueue("fail")
    await _claim_and_finish(queue, Status.FAILED, error="boom")
    now = time.time()
    since = now - 59
    report = await admin.throughput(since, 10, until=now + 1)
    assert len(report.buckets) == 6
    totals: dict[str, int] = {}
    for bucket in report.buckets:
        for status, count in bucket.counts.items():
            totals[status] = totals.get(status, 0) + count
    assert totals == {"complete": 3, "failed": 1}
    stats = {f.function: f for f in report.functions}
    assert stats["echo"].runs == 3 and stats["echo"].counts == {"complete": 3}
    assert stats["echo"].mean_s is not None and stats["echo"].p95_s is not None
    assert stats["echo"].p95_s >= 0 and report.sampled == report.total == 4
    assert not report.truncated
    only_fail = await admin.throughput(since, 30, function="fail")
    assert [f.function for f in only_fail.functions] == ["fail"]
    with pytest.raises(AdminError):
        await admin.throughput(since, 0)


async def test_retention_purges_old_runs_in_batches(make_queue: Any) -> None:
    queue = await make_queue()
    for value in range(3):
        await queue.enqueue("echo", value=value)
        await _claim_and_finish(queue, Status.COMPLETE, result=value)
    backend = queue.backend
    assert await purge_runs_older_than(backend, 3600, batch=2) == 0
    assert await purge_runs_older_than(backend, 0, batch=2) == 3
    assert (await admin_for(queue).runs()).total == 0

    cron = retention_cron_job(retention_s=86400)
    assert (cron.name, cron.cron, cron.kwargs) == (
        "purge_run_history",
        "0 3 * * *",
        {"retention_s": 86400},
    )
    with pytest.raises(ConfigurationError, match="retention period"):
        retention_cron_job(retention_s=0)

    # The task itself, as the cron job runs it: every finished run but its own goes.
    await queue.enqueue("echo", value="old")
    await _claim_and_finish(queue, Status.COMPLETE, result="old")
    async with running_worker(queue, [*FUNCTIONS, purge_run_history]):
        job = await queue.enqueue("purge_run_history", retention_s=0)
        assert job is not None
        await job.refresh(until_complete=10)
    assert job.status == Status.COMPLETE and job.result == 1
    remaining = (await admin_for(queue).runs()).runs
    assert [r.function for r in remaining] == ["purge_run_history"]


async def test_admin_jobs_by_status_paginated_with_totals(make_queue: Any) -> None:
    queue = await make_queue()
    admin = admin_for(queue)
    await queue.enqueue("echo", key="done", value=0)
    await _claim_and_finish(queue, Status.COMPLETE, result=0)
    await queue.enqueue("fail", key="broken")
    await _claim_and_finish(queue, Status.FAILED, error="boom")
    await queue.enqueue("sleep", key="busy", seconds=1)
    busy = await queue.dequeue()
    assert busy is not None
    await queue.enqueue("echo", key="dropped")
    await admin.abort("dropped", "not needed")
    for key in ("q1", "q2", "q3"):
        await queue.enqueue("echo", key=key)
    later = time.time() + 3600
    for key in ("s1", "s2"):
        await queue.enqueue("echo", key=key, scheduled=later)

    due = await admin.jobs(["queued"])
    assert [j.key for j in due.jobs] == ["q3", "q2", "q1"] and due.total == 3
    assert due.totals == {
        "queued": 3,
        "scheduled": 2,
        "active": 1,
        "aborting": 0,
        "complete": 1,
        "failed": 1,
        "aborted": 1,
    }
    assert not due.truncated and not any(j.due_later for j in due.jobs)
    scheduled = await admin.jobs(["scheduled"])
    assert [j.key for j in scheduled.jobs] == ["s2", "s1"] and scheduled.total == 2
    assert all(j.due_later and j.status == "queued" for j in scheduled.jobs)
    assert all(j.scheduled is not None and abs(j.scheduled - later) < 1 for j in scheduled.jobs)

    waiting = [
        j.key
        for offset in (0, 2, 4)
        for j in (await admin.jobs(["queued", "scheduled"], offset, 2)).jobs
    ]
    assert waiting == ["s2", "s1", "q3", "q2", "q1"]
    oldest = await admin.jobs(["queued", "scheduled"], 1, 2, oldest_first=True)
    assert [j.key for j in oldest.jobs] == ["q2", "q3"] and oldest.total == 5
    assert [j.key for j in (await admin.jobs(["queued"], 0, 2, oldest_first=True)).jobs] == [
        "q1",
        "q2",
    ]
    assert [j.key for j in (await admin.jobs(["scheduled"], oldest_first=True)).jobs] == [
        "s1",
        "s2",
    ]

    [running] = (await admin.jobs(["active", "aborting"])).jobs
    assert (running.key, running.status, running.function) == ("busy", "active", "sleep")
    assert running.run_id == str(busy.meta["run_id"]) and running.worker_id == "dequeue"
    assert running.started is not None and running.kwargs == {"seconds": 1}
    finished = (await admin.jobs(["failed", "aborted"])).jobs
    assert [(j.key, j.status, j.error) for j in finished] == [
        ("dropped", "aborted", "not needed"),
        ("broken", "failed", "boom"),
    ]
    everything = await admin.jobs(limit=50)
    assert everything.total == len(everything.jobs) == 9
    assert json.loads(json.dumps(everything.to_dict()))["totals"]["scheduled"] == 2

    for bad in (["exploded"], []):
        with pytest.raises(AdminError, match="unknown job status"):
            await admin.jobs(bad)
    with pytest.raises(AdminError):
        await admin.jobs(["queued"], limit=0)
    with pytest.raises(AdminError):
        await admin.jobs(["queued"], offset=-1)
    with pytest.raises(UnknownQueueError):
        await admin.jobs(["queued"], queue="nope")


async def test_admin_cron_lists_fire_times_and_the_schedules_latest_run(make_queue: Any) -> None:
    queue = await make_queue()
    every_second = CronJob(echo, cron="* * * * * *", kwargs={"value": "tick"})
    nightly = CronJob(add, cron="30 3 * * *", kwargs={"a": 1, "b": 2}, timeout=60)
    admin = admin_for(queue, cron_jobs=[every_second, nightly], cron_tz="Europe/Berlin")
    # Berlin moves its clocks forward at 02:00 on 2025-03-30: 03:30 is 02:30 UTC before
    # and 01:30 UTC after.
    before_dst = datetime(2025, 3, 29, 1, 0, tzinfo=UTC)
    entries = {e.name: e for e in await admin.cron(before_dst, upcoming=3)}
    assert set(entries) == {"add", "echo", "purge_run_history"}
    add_entry = entries["add"]
    assert add_entry.next_runs == [
        datetime(2025, 3, 29, 2, 30, tzinfo=UTC).timestamp(),
        datetime(2025, 3, 30, 1, 30, tzinfo=UTC).timestamp(),
        datetime(2025, 3, 31, 1, 30, tzinfo=UTC).timestamp(),
    ]
    assert add_entry.next_run == add_entry.next_runs[0]
    assert (add_entry.cron, add_entry.tz, add_entry.queue) == (
        "30 3 * * *",
        "Europe/Berlin",
        "default",
    )
    assert (add_entry.timeout, add_entry.kwargs, add_entry.unique) == (60, {"a": 1, "b": 2}, True)
    assert add_entry.last_run is None and entries["echo"].last_run is None
    assert entries["echo"].doc is not None

    # The schedule fires as a worker's scheduler fires it; a claim starts its run.
    [fired] = await CronScheduler(queue, [every_second], "Europe/Berlin", tick=1).tick()
    started = await queue.dequeue(timeout=5)
    assert started is not None and started.key == fired.key
    run_id = str(started.meta["run_id"])
    last = (await _cron_entry(admin, "echo")).last_run
    assert last is not None and (last.run_id, last.status) == (run_id, "running")
    assert last.started is not None
    await queue.finish(started, Status.COMPLETE, result="tick")
    # The task run by hand afterwards is the task's newest run, not the schedule's.
    await admin.enqueue("echo", {"value": "by hand"})
    by_hand = await _claim_and_finish(queue, Status.COMPLETE, result="by hand")
    assert (await admin.runs(function="echo", limit=1)).runs[0].run_id == by_hand
    entry = await _cron_entry(admin, "echo")
    assert entry.last_run is not None
    assert (entry.last_run.run_id, entry.last_run.status) == (run_id, "complete")
    assert len(entry.next_runs) == 5 and entry.next_runs == sorted(set(entry.next_runs))
    assert (await _cron_entry(admin, "add")).last_run is None
    json.dumps([e.to_dict() for e in await admin.cron()])
    with pytest.raises(AdminError):
        await admin.cron(upcoming=0)
    with pytest.raises(AdminError, match="naive"):
        await admin.cron(datetime(2025, 3, 29, 1, 0))


async def _cron_entry(admin: Admin, name: str) -> Any:
    return next(e for e in await admin.cron() if e.name == name)


async def test_admin_health_needs_a_live_worker_on_every_queue(make_queue: Any) -> None:
    queue = await make_queue()
    other = await make_queue("other")
    admin = Admin([queue, other])
    report = await admin.health()
    assert not report.healthy and report.workers == 0
    assert [(h.name, h.alive, h.healthy, h.last_report_age_s) for h in report.queues] == [
        ("default", 0, False, None),
        ("other", 0, False, None),
    ]
    async with running_worker(queue, FUNCTIONS) as worker:
        report = await wait_until(
            lambda: _health_with(admin, worker.id), message="the worker's record"
        )
        default, spare = report.queues
        assert default.healthy and default.alive == 1
        assert [w.id for w in default.workers] == [worker.id]
        assert default.last_report_age_s is not None and default.last_report_age_s >= 0
        assert not spare.healthy and not report.healthy
        assert (await admin.health(queue="default")).healthy

        # A worker on the other queue that stopped reporting an hour ago (hung, not dead:
        # its record has not expired yet).
        stale = {"id": "stuck", "queue": "other", "updated": time.time() - 3600}
        await other.backend.put_worker("stuck", other.dump(stale), 600)
        report = await admin.health()
        assert report.healthy and report.workers == 2
        strict = await admin.health(max_age_s=600)
        assert not strict.healthy and strict.queues[0].healthy
        [stuck] = strict.queues[1].workers
        assert stuck.id == "stuck" and not stuck.alive
        assert stuck.age_s is not None and stuck.age_s >= 3600
        assert json.loads(json.dumps(strict.to_dict()))["queues"][1]["alive"] == 0
    with pytest.raises(AdminError):
        await admin.health(max_age_s=0)


async def _health_with(admin: Admin, worker_id: str) -> Health | None:
    report = await admin.health()
    workers = [w.id for h in report.queues for w in h.workers]
    return report if worker_id in workers else None


async def test_admin_over_several_settings(make_queue: Any) -> None:
    main = await make_queue()
    other = await make_queue("other")
    admin = Admin.from_settings_list(
        [
            {
                "queue": main,
                "functions": FUNCTIONS,
                "cron_jobs": [CronJob(echo, cron="0 3 * * *")],
                "cron_tz": "Europe/Berlin",
            },
            {
                "queue": other,
                "functions": [echo, Handle("slow_typed", echo, timeout=5)],
                "cron_jobs": [CronJob(add, cron="0 4 * * *", kwargs={"a": 1, "b": 1})],
                "cron_tz": "America/New_York",
            },
        ]
    )
    assert [q.name for q in admin.queues] == ["default", "other"]
    # A task name both register is the first settings' (with its job options).
    available = {job.name: job for job in await admin.available_jobs()}
    assert available["slow_typed"].timeout == 300 and "typed" in available
    # Each cron job stays with its queue and its worker's zone.
    crons = {(e.name, e.queue): e for e in await admin.cron()}
    assert set(crons) == {
        ("echo", "default"),
        ("add", "other"),
        ("purge_run_history", "default"),
        ("purge_run_history", "other"),
    }
    assert crons[("echo", "default")].tz == "Europe/Berlin"
    assert crons[("add", "other")].tz == "America/New_York"
    assert crons[("purge_run_history", "other")].tz == "America/New_York"

    await main.enqueue("echo", key="here")
    await other.enqueue("echo", key="there")
    page = await admin.jobs(["queued"])
    assert {(j.key, j.queue) for j in page.jobs} == {("here", "default"), ("there", "other")}
    assert page.total == 2 and page.totals["queued"] == 2
    assert [j.key for j in (await admin.jobs(["queued"], queue="other")).jobs] == ["there"]
    key = await admin.enqueue("add", {"a": 1, "b": 2}, queue="other")
    assert await other.job(key) is not None and await main.job(key) is None

    merged = Admin.merge(admin_for(main), Admin(other, {"echo": echo}))
    assert [q.name for q in merged.queues] == ["default", "other"]
    assert "typed" in merged.functions
    assert {(e.name, e.queue) for e in await merged.cron()} == {("purge_run_history", "default")}
    with pytest.raises(ConfigurationError):
        Admin.from_settings_list([])
    with pytest.raises(ConfigurationError, match="two queues of one name"):
        Admin.from_settings_list([{"queue": main}, {"queue": main}])
    with pytest.raises(ConfigurationError, match="elsewhere"):
        Admin(main, cron_jobs={"elsewhere": [CronJob(echo, cron="0 3 * * *")]})
