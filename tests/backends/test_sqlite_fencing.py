"""Fencing tokens and claim order on the SQLite backend, called directly.

Each test takes one rule of the protocol's fencing notes (see
:mod:`conveyor.backends.base`) or of claim order, and fails without it: a stale owner's
write must be refused with nothing of it stored, recover must change the token, renew must
report what it did not renew, and a due retry must not wait behind jobs enqueued later.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.backends.base import JobRow, Lease, NewJob, Renewal, RunEnd, Transition
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.sql import load_migrations, load_queries, statements
from conveyor.testing.backends import isolated_url
from conveyor.testing.helpers import wait_until


@pytest.fixture
def url(tmp_path: Path) -> str:
    return isolated_url("sqlite", tmp_path)


@pytest.fixture
async def backend(url: str) -> AsyncIterator[SQLiteBackend]:
    b = SQLiteBackend.from_url(url, "main")
    await b.connect()
    yield b
    await b.drop()


async def _claim_one(backend: SQLiteBackend, key: str = "k", lease_s: float = 30) -> JobRow:
    await backend.enqueue([NewJob(key, "f", "queued payload")])
    [row] = await backend.claim("w1", 1, lease_s, time.time())
    assert row.key == key and row.token is not None and row.run_id is not None
    return row


def _done(row: JobRow, payload: str = "done", token: str | None = "own") -> Transition:
    """A transition completing ``row``'s run; ``token="own"`` carries the row's token."""
    run = RunEnd(row.run_id or "", "complete", int(time.time() * 1000), b"result")
    return Transition(
        row.key, payload, "complete", run=run, token=row.token if token == "own" else token
    )


def _renewal(aborting: list[str] | None = None, lost: list[str] | None = None) -> Renewal:
    return Renewal(aborting=aborting or [], lost=lost or [])


async def _take_over(backend: SQLiteBackend, row: JobRow) -> JobRow:
    """Let ``row``'s lease expire (by the clock recover is given) and recover it as w2."""
    [taken] = await backend.recover("w2", 10, 30, time.time() + 3600)
    assert taken.key == row.key
    return taken


# Claim and recover hand out new tokens


async def test_claim_gives_the_run_id_as_a_token_never_reused(backend: SQLiteBackend) -> None:
    first = await _claim_one(backend)
    assert first.token == first.run_id
    assert await backend.finish([_done(first)]) == [True]
    # The same key again, after its runs are purged: AUTOINCREMENT never hands an id out twice.
    assert await backend.purge_runs(int(time.time() * 1000) + 1000, 10) == 1
    second = await _claim_one(backend)
    assert second.token is not None and int(second.token) > int(first.token or 0)
    assert await backend.finish([_done(first, "stale")]) == [False]
    [stored] = await backend.get(["k"])
    assert stored is not None and stored.status == "active"


async def test_recover_changes_the_token_in_the_same_step(backend: SQLiteBackend) -> None:
    dead = await _claim_one(backend)
    taken = await _take_over(backend, dead)
    assert taken.token not in (None, dead.token)
    assert taken.run_id == dead.run_id  # still the dead attempt's run
    assert taken.worker_id == "w2"
    # The dead owner's writes stop working; the new owner's work.
    assert await backend.renew("w1", [Lease("k", dead.token or "")], 30, time.time()) == (
        _renewal(lost=["k"])
    )
    assert await backend.update("k", "late progress", dead.token) is False
    assert await backend.finish([_done(dead, "late")]) == [False]
    assert await backend.finish([_done(taken, "recovered")]) == [True]
    [stored] = await backend.get(["k"])
    assert stored is not None and (stored.status, stored.payload) == ("complete", "recovered")


async def test_tokens_of_recover_are_never_run_ids(backend: SQLiteBackend) -> None:
    # Recover reserves its tokens from the runs' id sequence: a later claim's run id (its
    # token) must lie above them, or an old recovered lease could match a new claim.
    await backend.enqueue([NewJob(k, "f", "p") for k in "abc"])
    dead = await backend.claim("w1", 3, 30, time.time())
    taken = await backend.recover("w2", 10, 30, time.time() + 3600)
    later = await _claim_one(backend, "d")
    tokens = [int(r.token or 0) for r in dead + taken + [later]]
    assert len(set(tokens)) == 7
    assert max(tokens[:3]) < min(tokens[3:6]) and max(tokens[3:6]) < tokens[6]


async def test_recover_reserves_ids_in_a_file_without_runs(backend: SQLiteBackend) -> None:
    # An active job whose run is gone (runs purged by hand): the runs' sequence may have no
    # row; recover still hands out a token, and the next run id lies above it.
    dead = await _claim_one(backend)
    with sqlite3.connect(backend.settings.path) as conn:
        conn.execute("DELETE FROM sqlite_sequence WHERE name = 'runs'")
        conn.execute("DELETE FROM runs")
    conn.close()
    taken = await _take_over(backend, dead)
    assert taken.token is not None
    later = await _claim_one(backend, "other")
    assert int(later.token or 0) > int(taken.token)


# A lease is held under its token, expired or not


async def test_an_expired_lease_nobody_recovered_is_still_held(backend: SQLiteBackend) -> None:
    row = await _claim_one(backend, lease_s=1)
    late = time.time() + 100  # the lease ran out long ago; nobody recovered the job
    assert await backend.renew("w1", [Lease("k", row.token or "")], 30, late) == _renewal()
    assert await backend.recover("w2", 10, 30, late + 29) == []  # renewed to late + 30
    assert await backend.finish([_done(row)]) == [True]


# finish


async def test_a_stale_finish_stores_nothing(backend: SQLiteBackend) -> None:
    dead = await _claim_one(backend)
    taken = await _take_over(backend, dead)
    stale = [
        _done(dead, "stale complete"),
        Transition("k", "stale retry", "queued", due=0, run=_done(dead).run, token=dead.token),
        Transition("k", "stale delete", "failed", delete=True, token=dead.token),
    ]
    assert await backend.finish(stale) == [False, False, False]
    [stored] = await backend.get(["k"])
    assert stored is not None
    assert (stored.status, stored.payload, stored.worker_id) == ("active", "queued payload", "w2")
    run = await backend.get_run(dead.run_id or "")
    assert run is not None and (run.status, run.finished_ms, run.detail) == ("running", 0, b"")
    # The new owner still holds it: the refused writes did not release the lease.
    assert await backend.renew("w2", [Lease("k", taken.token or "")], 30, time.time()) == (
        _renewal()
    )


async def test_the_same_finish_twice_is_applied_once(backend: SQLiteBackend) -> None:
    row = await _claim_one(backend)
    retry = Transition("k", "retry", "queued", due=0, run=_done(row).run, token=row.token)
    assert await backend.finish([retry, retry]) == [True, False]
    assert await backend.finish([retry]) == [False]
    [stored] = await backend.get(["k"])
    assert stored is not None and (stored.status, stored.worker_id) == ("queued", None)
    # Applying cleared the token: the job is held by nobody until it is claimed again.
    assert await backend.update("k", "late", row.token) is False
    [again] = await backend.claim("w1", 1, 30, time.time())
    assert again.token != row.token


async def test_finish_without_token_is_unconditional(backend: SQLiteBackend) -> None:
    dead = await _claim_one(backend)
    await _take_over(backend, dead)
    # No token: applied to whatever is stored (True: the job existed).
    assert await backend.finish([_done(dead, "forced", token=None)]) == [True]
    [stored] = await backend.get(["k"])
    assert stored is not None and (stored.status, stored.payload) == ("complete", "forced")
    # A missing job: not applied, but its run's end is stored.
    orphan = await _claim_one(backend, "gone")
    await backend.finish([Transition("gone", "x", "failed", delete=True, token=orphan.token)])
    assert await backend.finish([_done(orphan, token=None)]) == [False]
    run = await backend.get_run(orphan.run_id or "")
    assert run is not None and run.status == "complete"


async def test_finish_results_follow_the_transitions(backend: SQLiteBackend) -> None:
    await backend.enqueue([NewJob(k, "f", "p") for k in "abc"])
    rows = {r.key: r for r in await backend.claim("w1", 3, 30, time.time())}
    transitions = [
        _done(rows["a"]),
        _done(rows["b"], token="not-a-token"),
        _done(rows["c"], token=rows["a"].token),  # another job's token
        _done(rows["b"]),
    ]
    assert await backend.finish(transitions) == [True, False, False, True]
    assert await backend.count(["active", "complete"]) == {"active": 1, "complete": 2}


async def test_finish_with_logs_keeps_lines_of_a_refused_transition(
    backend: SQLiteBackend,
) -> None:
    dead = await _claim_one(backend)
    await _take_over(backend, dead)
    run_id = dead.run_id or ""
    line = (run_id, 1, time.time(), "INFO", "written before the lease was lost", b"")
    assert await backend.finish_with_logs([_done(dead)], [line]) == [False]
    assert [x.message for x in await backend.read_logs(run_id, 0, 10)] == [line[4]]
    [stored] = await backend.get(["k"])
    assert stored is not None and stored.status == "active"


# update


async def test_update_with_a_stale_token_is_refused(backend: SQLiteBackend) -> None:
    row = await _claim_one(backend)
    assert await backend.update("k", "progress 1", row.token) is True
    taken = await _take_over(backend, row)
    assert await backend.update("k", "progress 2", row.token) is False
    assert await backend.update("k", "progress 3", "bogus") is False
    [stored] = await backend.get(["k"])
    assert stored is not None and stored.payload == "progress 1"
    assert await backend.update("k", "progress 4", taken.token) is True
    assert await backend.update("k", "no token", None) is True
    assert await backend.update("missing", "x", None) is False
    [stored] = await backend.get(["k"])
    assert stored is not None and stored.payload == "no token"


# renew


async def test_renew_reports_lost_and_aborting_and_changes_only_held(
    backend: SQLiteBackend,
) -> None:
    await backend.enqueue([NewJob(k, "f", "p") for k in ("held", "aborted", "stolen", "done")])
    t = time.time()  # after the enqueue: a job due now is due at its enqueue time
    rows = {r.key: r for r in await backend.claim("w1", 4, 30, t)}
    assert await backend.abort("aborted", "aborting", t) == "active"
    await backend.finish([_done(rows["done"])])
    # "stolen" is recovered by w2 (it looked dead at t + 100 by w2's clock).
    await backend.renew("w1", [Lease(k, rows[k].token or "") for k in ("held", "aborted")], 200, t)
    [stolen] = await backend.recover("w2", 10, 2000, t + 100)
    assert stolen.key == "stolen"
    leases = [Lease(k, rows[k].token or "") for k in ("held", "aborted", "stolen", "done")]
    leases += [Lease("missing", "1"), Lease("held", "12345678"), Lease("held", "x")]
    renewal = await backend.renew("w1", leases, 1000, t + 150)
    assert renewal == _renewal(
        aborting=["aborted"], lost=["stolen", "done", "missing", "held", "held"]
    )
    # Only the held ones were extended (to t + 1150); "stolen" is w2's until t + 2100.
    assert await backend.recover("w3", 10, 30, t + 1149) == []
    assert {r.key for r in await backend.recover("w3", 10, 30, t + 1151)} == {"held", "aborted"}


async def test_renew_extends_held_leases_and_leaves_lost_ones_alone(
    backend: SQLiteBackend,
) -> None:
    await backend.enqueue([NewJob(k, "f", "p") for k in ("mine", "theirs")])
    t = time.time()
    rows = {r.key: r for r in await backend.claim("w1", 2, 30, t)}
    mine, theirs = (Lease(k, rows[k].token or "") for k in ("mine", "theirs"))
    await backend.renew("w1", [mine], 60, t)
    # "theirs" looked dead at t + 31 and was taken over until t + 41: a renewal under its
    # old token must neither extend that lease nor stamp touched_ms.
    [taken] = await backend.recover("w2", 10, 10, t + 31)
    assert taken.key == "theirs"
    before = await backend.get(["theirs"])
    assert await backend.renew("w1", [mine, theirs], 60, t + 35) == _renewal(lost=["theirs"])
    assert await backend.get(["theirs"]) == before
    # "mine" now runs to t + 95; "theirs" still ended at t + 41.
    assert [r.key for r in await backend.recover("w3", 10, 100, t + 50)] == ["theirs"]
    assert await backend.recover("w3", 10, 100, t + 94) == []
    assert [r.key for r in await backend.recover("w3", 10, 100, t + 96)] == ["mine"]


async def test_renew_of_nothing_touches_nothing(backend: SQLiteBackend) -> None:
    assert await backend.renew("w1", [], 30, time.time()) == _renewal()


async def test_renewal_looks_leases_up_by_key(backend: SQLiteBackend) -> None:
    # Each lease is one primary key lookup, not a walk over every running job of the queue.
    queries = load_queries()
    with sqlite3.connect(backend.settings.path) as conn:
        for name in ("renew_leases", "held_leases"):
            params = {"queue": "q", "leases": "{}", "lease_until": 0, "now_ms": 0}
            plan = " ".join(
                str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + queries[name], params)
            )
            assert "(queue=? AND key=?)" in plan and "jobs_status" not in plan, (name, plan)
    conn.close()


# Claim order: priority, then due time (a job due now is due at its enqueue time), then seq


async def _wait_past(moment: float) -> None:
    await wait_until(lambda: time.time() > moment, timeout=5, message="the clock passing due")


async def test_a_due_retry_comes_before_jobs_enqueued_after_it(backend: SQLiteBackend) -> None:
    row = await _claim_one(backend, "retry")
    due = time.time() + 0.02
    retry = Transition("retry", "p", "queued", due=due, run=_done(row).run, token=row.token)
    assert await backend.finish([retry]) == [True]
    await _wait_past(due)
    await backend.enqueue([NewJob(f"later-{i}", "f", "p") for i in range(50)])
    claimed = await backend.claim("w1", 51, 30, time.time())
    assert [r.key for r in claimed] == ["retry"] + [f"later-{i}" for i in range(50)]


async def test_a_scheduled_job_comes_before_jobs_enqueued_after_its_due_time(
    backend: SQLiteBackend,
) -> None:
    due = time.time() + 0.02
    await backend.enqueue([NewJob("early", "f", "p"), NewJob("scheduled", "f", "p", due=due)])
    await _wait_past(due)
    await backend.enqueue([NewJob(f"later-{i}", "f", "p") for i in range(3)])
    await backend.enqueue([NewJob("urgent", "f", "p", priority=-1)])
    claimed = await backend.claim("w1", 10, 30, time.time())
    keys = ["urgent", "early", "scheduled", "later-0", "later-1", "later-2"]
    assert [r.key for r in claimed] == keys


async def test_a_requeue_due_now_sorts_by_its_requeue_time(backend: SQLiteBackend) -> None:
    row = await _claim_one(backend, "requeued")
    due = time.time() + 0.02
    await backend.enqueue([NewJob("scheduled", "f", "p", due=due)])
    await _wait_past(due)
    # Due now (0): behind the scheduled job that became due before it, ahead of later jobs.
    requeue = Transition("requeued", "p", "queued", due=0, token=row.token)
    assert await backend.finish([requeue]) == [True]
    await backend.enqueue([NewJob("later", "f", "p")])
    claimed = await backend.claim("w1", 10, 30, time.time())
    assert [r.key for r in claimed] == ["scheduled", "requeued", "later"]


async def test_a_claim_whose_clock_lags_takes_jobs_due_by_its_clock(
    backend: SQLiteBackend,
) -> None:
    # Due is when a job becomes claimable; the enqueue time only orders. A caller whose
    # `now` is behind the enqueue still gets a job due at once, but not one due later.
    lagging = time.time() - 100
    await backend.enqueue(
        [NewJob("due-later", "f", "p", due=lagging + 50), NewJob("at-once", "f", "p")]
    )
    assert [r.key for r in await backend.claim("w1", 10, 30, lagging)] == ["at-once"]
    assert await backend.count(["scheduled"]) == {"scheduled": 0}
    assert [r.key for r in await backend.claim("w1", 10, 30, time.time())] == ["due-later"]


# Upgrading a file of migration 2


def _file_at_version(path: Path, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(load_queries()["create_migrations_table"])
        for migration in load_migrations():
            if migration.version > version:
                break
            for statement in statements(migration.script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO conveyor_migrations VALUES (?, ?, 0)",
                (migration.version, migration.name),
            )
    finally:
        conn.close()


async def test_jobs_stored_before_the_upgrade_keep_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _file_at_version(path, 2)
    t = time.time()
    with sqlite3.connect(path) as conn:
        # Written by the previous version: a claimed job (run 1) and a job queued due now.
        conn.execute(
            "INSERT INTO runs (queue, key, function, attempt, worker_id, status, started_ms)"
            " VALUES ('main', 'old-active', 'f', 1, 'w-old', 'running', 1)"
        )
        conn.execute(
            "INSERT INTO jobs (queue, key, function, payload, status, attempts, worker_id,"
            " run_id, lease_until, seq) VALUES"
            " ('main', 'old-active', 'f', 'p', 'active', 1, 'w-old', 1, ?, 1),"
            " ('main', 'old-queued', 'f', 'p', 'queued', 0, NULL, NULL, 0, 2)",
            (t + 30,),
        )
    conn.close()
    backend = SQLiteBackend.from_url(f"sqlite:///{path}", "main")
    await backend.connect()
    try:
        await backend.enqueue([NewJob("new", "f", "p")])
        # The old queued job (due 0) still runs first.
        [first] = await backend.claim("w1", 1, 3600, time.time())
        assert first.key == "old-queued"
        # The old active job has no token: no token holds it, not even its run id.
        old = Lease("old-active", "1")
        assert await backend.renew("w-old", [old], 30, t + 1) == _renewal(lost=["old-active"])
        refused = Transition("old-active", "x", "complete", token="1")
        assert await backend.finish([refused]) == [False]
        # Its lease expires (it was not renewed) and recover gives it a token.
        [taken] = await backend.recover("w2", 10, 30, t + 31)
        assert taken.key == "old-active" and taken.token is not None and taken.run_id == "1"
        assert await backend.finish([_done(taken)]) == [True]
    finally:
        await backend.drop()
