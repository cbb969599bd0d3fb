"""Fencing tokens and the claim order on PostgreSQL, called on the backend directly.

Each rule of the protocol's fencing (``conveyor.backends.base``) has a test here that fails
without it: claims and recoveries give new tokens, never reused; a stale owner's finish,
update or renewal changes nothing and says so; an expired lease nobody took over is still
held; a job claimed before the upgrade (no token) is recovered, then works. And the claim
order: a retry or a scheduled job that became due comes before immediate jobs enqueued
after it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from backends import test_postgres
from backends.test_postgres import Factory, _job
from conveyor.backends.base import Lease, Renewal, RunEnd, Transition
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.sqlfiles import load
from conveyor.testing import wait_until

url = test_postgres.url
schema = test_postgres.schema
admin = test_postgres.admin
make = test_postgres.make


def _end(key: str, run_id: str | None, token: str | None, status: str = "complete") -> Transition:
    """A transition that ends the run ``run_id`` of ``key`` with ``status`` under ``token``."""
    run = RunEnd(run_id or "", status, int(time.time() * 1000), detail=b"d", error="e")
    return Transition(key, f'{{"by":"{token}"}}', status, run=run, token=token)


async def _stored(admin: Any, schema: str, key: str) -> tuple[Any, ...]:
    """What the database holds for a job: status, payload, worker, token, lease_until."""
    cur = await admin.execute(
        f'SELECT status, payload, worker_id, token, lease_until FROM "{schema}".jobs'
        " WHERE key = %s",
        (key,),
    )
    row = await cur.fetchone()
    assert row is not None
    return tuple(row)


async def _run(backend: PostgresBackend, run_id: str | None) -> tuple[str, int]:
    run = await backend.get_run(run_id or "")
    assert run is not None
    return run.status, run.finished_ms


async def _claim_one(backend: PostgresBackend, worker: str = "w", lease_s: float = 30) -> Any:
    rows = await backend.claim(worker, 1, lease_s, time.time())
    assert len(rows) == 1
    return rows[0]


# Tokens


async def test_claims_and_recoveries_give_tokens_never_reused(make: Factory) -> None:
    backend = await make()
    other_queue = await make("other")
    await backend.enqueue([_job(f"k{i}") for i in range(5)])
    await other_queue.enqueue([_job("k0")])
    rows = await backend.claim("w", 5, 0.01, time.time())
    tokens = [row.token for row in rows]
    assert None not in tokens
    [theirs] = await other_queue.claim("w", 1, 30, time.time())
    tokens.append(theirs.token)
    # A recovery gives a new token; the run stays the dead attempt's.
    [recovered] = await backend.recover("w2", 1, 30, time.time() + 1)
    before = next(row for row in rows if row.key == recovered.key)
    assert recovered.run_id == before.run_id and recovered.token != before.token
    tokens.append(recovered.token)
    # A finished job's key enqueued again: its next claim has a token of its own.
    await backend.finish([_end(recovered.key, recovered.run_id, recovered.token)])
    assert await backend.enqueue([_job(recovered.key)]) == [True]
    again = await _claim_one(backend)
    assert again.key == recovered.key
    tokens.append(again.token)
    assert len(set(tokens)) == len(tokens) == 8


async def test_tokens_are_returned_by_claim_and_recover_only(make: Factory) -> None:
    backend = await make()
    await backend.enqueue([_job("a")])
    row = await _claim_one(backend)
    assert row.token is not None
    [got] = await backend.get(["a"])
    [listed] = await backend.list_jobs(None, 0, 10)
    assert got is not None and got.token is None and listed.token is None


# finish


async def test_a_stale_owners_finish_stores_nothing(make: Factory, admin: Any, schema: str) -> None:
    backend = await make()
    await backend.enqueue([_job("job")])
    dead = await _claim_one(backend, "w1", lease_s=0.01)
    [new] = await backend.recover("w2", 10, 30, time.time() + 1)
    before = await _stored(admin, schema, "job")
    # The old owner comes back: its outcome is refused, its run is not ended.
    for status in ("complete", "queued", "failed"):
        assert await backend.finish([_end("job", dead.run_id, dead.token, status)]) == [False]
    stale_delete = Transition("job", "{}", "complete", delete=True, token=dead.token)
    assert await backend.finish([stale_delete]) == [False]
    assert await _stored(admin, schema, "job") == before
    assert before[0] == "active" and before[2] == "w2"
    assert await _run(backend, dead.run_id) == ("running", 0)
    # The new owner's finish is applied, with the run's end, and releases the job.
    assert await backend.finish([_end("job", new.run_id, new.token)]) == [True]
    status, payload, _, token, lease_until = await _stored(admin, schema, "job")
    assert (status, payload, token, lease_until) == ("complete", {"by": new.token}, None, 0)
    assert (await _run(backend, dead.run_id))[0] == "complete"


async def test_finish_answers_each_transition_and_refuses_the_same_one_twice(
    make: Factory, admin: Any, schema: str
) -> None:
    backend = await make()
    await backend.enqueue([_job(k) for k in ("held", "stale", "unfenced", "twice", "vanished")])
    rows = {row.key: row for row in await backend.claim("w", 5, 30, time.time())}
    held, twice, vanished = rows["held"], rows["twice"], rows["vanished"]
    await admin.execute(f'DELETE FROM "{schema}".jobs WHERE key = %s', ("vanished",))
    transitions = [
        _end("held", held.run_id, held.token),
        _end("stale", rows["stale"].run_id, "999999999"),  # a token it never had
        _end("unfenced", rows["unfenced"].run_id, None),  # no token: unconditional
        _end("vanished", vanished.run_id, None),  # no token, no job: not applied ...
        _end("stale", rows["stale"].run_id, "not-a-token"),
    ]
    assert await backend.finish(transitions) == [True, False, True, False, False]
    assert (await _run(backend, vanished.run_id))[0] == "complete"  # ... its run's end is
    [stale] = await backend.get(["stale"])
    assert stale is not None and stale.status == "active"
    assert await _run(backend, stale.run_id) == ("running", 0)
    assert await backend.finish([_end("twice", twice.run_id, twice.token)]) == [True]
    retry = Transition("twice", "{}", "queued", token=twice.token)  # after it was applied
    assert await backend.finish([retry]) == [False]
    [done] = await backend.get(["twice"])
    assert done is not None and done.status == "complete"
    assert await backend.finish([]) == []


async def test_a_deleting_transition_is_fenced_too(make: Factory) -> None:
    backend = await make()
    await backend.enqueue([_job("gone")])
    row = await _claim_one(backend)
    stale = Transition("gone", "{}", "complete", delete=True, token=str(int(row.token) + 1))
    assert await backend.finish([stale]) == [False]
    assert (await backend.get(["gone"]))[0] is not None
    owner = Transition("gone", "{}", "complete", delete=True, token=row.token)
    assert await backend.finish([owner]) == [True]
    assert await backend.get(["gone"]) == [None]


async def test_finish_with_logs_keeps_the_lines_of_a_refused_finish(make: Factory) -> None:
    backend = await make()
    await backend.enqueue([_job("a"), _job("b")])
    a, b = sorted(await backend.claim("w", 2, 30, time.time()), key=lambda r: r.key)
    lines = [(row.run_id or "", 1, time.time(), "INFO", "ran", b"") for row in (a, b)]
    stale_b = _end("b", b.run_id, "1" + (b.token or ""))
    applied = await backend.finish_with_logs([_end("a", a.run_id, a.token), stale_b], lines)
    assert applied == [True, False]
    for run_id in (a.run_id, b.run_id):
        assert [line.message for line in await backend.read_logs(run_id or "", 0, 10)] == ["ran"]
    assert await _run(backend, b.run_id) == ("running", 0)


# An expired lease nobody took over


async def test_an_expired_lease_nobody_recovered_is_still_held(make: Factory) -> None:
    backend = await make()
    await backend.enqueue([_job("slow"), _job("late")])
    now = time.time()
    rows = {row.key: row for row in await backend.claim("w", 2, 0.01, now)}
    later = now + 60  # both leases expired long ago; no recover ran
    slow = Lease("slow", rows["slow"].token or "")
    assert await backend.renew("w", [slow], 30, later) == Renewal()
    [recovered] = await backend.recover("w2", 10, 30, later + 1)
    assert recovered.key == "late"  # not "slow": renewed
    late = rows["late"]
    assert await backend.finish([_end("late", late.run_id, late.token)]) == [False]
    assert await backend.finish([_end("slow", rows["slow"].run_id, slow.token)]) == [True]


# renew


async def test_renew_extends_held_leases_and_reports_the_others(
    make: Factory, admin: Any, schema: str
) -> None:
    backend = await make()
    keys = ["held", "aborting", "finished", "deleted", "taken"]
    await backend.enqueue([_job(k) for k in keys])
    now = time.time()
    rows = {row.key: row for row in await backend.claim("w", 4, 30, now)}
    rows["taken"] = await _claim_one(backend, "w", lease_s=0.01)
    leases = [Lease(k, rows[k].token or "") for k in keys]
    await backend.abort("aborting", '{"error":"stop"}', now)
    # "taken" expired, and another worker's sweep recovered it.
    [taken] = await backend.recover("w2", 10, 30, now + 1)
    assert taken.key == "taken"
    await backend.finish([_end("finished", rows["finished"].run_id, rows["finished"].token)])
    await backend.finish(
        [Transition("deleted", "{}", "complete", delete=True, token=rows["deleted"].token)]
    )
    taken_before = await _stored(admin, schema, "taken")
    later = now + 5
    leases += [Lease("missing", "1"), Lease("held", "garbage")]
    renewal = await backend.renew("w", leases, 30, later)
    assert renewal.aborting == ["aborting"]
    assert renewal.lost == ["finished", "deleted", "taken", "missing", "held"]
    # Held ones were extended and touched; the lost ones were left as they were.
    assert (await _stored(admin, schema, "held"))[4] == later + 30
    [held] = await backend.get(["held"])
    assert held is not None and held.touched_ms == int(later * 1000)
    assert (await _stored(admin, schema, "aborting"))[4] == later + 30
    assert await _stored(admin, schema, "taken") == taken_before
    assert await backend.renew("w", [], 30, later) == Renewal()


# update


async def test_update_with_a_token_is_stored_only_while_held(make: Factory) -> None:
    backend = await make()
    await backend.enqueue([_job("job"), _job("queued")])
    dead = await _claim_one(backend, "w1", lease_s=0.01)
    assert await backend.update("job", '{"progress":1}', dead.token) is True
    [new] = await backend.recover("w2", 10, 30, time.time() + 1)
    assert await backend.update("job", '{"progress":2}', dead.token) is False
    assert await backend.update("job", '{"progress":3}', "bogus") is False
    [row] = await backend.get(["job"])
    assert row is not None and json.loads(row.payload) == {"progress": 1}
    assert await backend.update("job", '{"progress":4}', new.token) is True
    assert await backend.update("queued", '{"meta":1}', new.token) is False  # not its token
    assert await backend.update("queued", '{"meta":2}') is True  # no token: unconditional
    assert await backend.update("missing", "{}") is False
    [queued] = await backend.get(["queued"])
    assert queued is not None and json.loads(queued.payload) == {"meta": 2}


# Claim order


async def test_a_retry_comes_before_immediate_jobs_enqueued_after_it(make: Factory) -> None:
    backend = await make()
    await backend.enqueue([_job("retried"), _job("requeued")])
    first, second = await backend.claim("w", 2, 30, time.time())
    due = time.time() + 0.05
    retry = Transition("retried", "{}", "queued", due=due, token=first.token)
    assert await backend.finish([retry]) == [True]
    await wait_until(lambda: time.time() > due, message="the retry is due")
    await backend.enqueue([_job(f"later-{i}") for i in range(50)])
    await backend.enqueue([_job("later-one")])
    assert (await _claim_one(backend)).key == "retried"
    # A higher priority still goes first, whenever it was enqueued.
    await backend.enqueue([_job("urgent", priority=-1)])
    assert (await _claim_one(backend)).key == "urgent"
    # Re-queued at once (due 0), a job is due at the time of the re-queue: after the jobs
    # enqueued before it, before those enqueued after it.
    requeue = Transition("requeued", "{}", "queued", due=0.0, token=second.token)
    assert await backend.finish([requeue]) == [True]
    await backend.enqueue([_job("latest")])
    keys = [row.key for row in await backend.claim("w", 100, 30, time.time())]
    assert keys == [f"later-{i}" for i in range(50)] + ["later-one", "requeued", "latest"]


async def test_a_scheduled_job_that_became_due_comes_before_later_immediate_jobs(
    make: Factory,
) -> None:
    backend = await make()
    due = time.time() + 0.05
    await backend.enqueue([_job("scheduled", due=due)])
    await wait_until(lambda: time.time() > due, message="the scheduled job is due")
    # After it, by each way of enqueueing: a batch, one job, and arrays (once-marks, bytes).
    await backend.enqueue([_job(f"now-{i}") for i in range(50)])
    await backend.enqueue([_job("now-one")])
    await backend.enqueue([_job("now-pickled", b"\x80\x04."), _job("now-once", once="o")])
    rows = await backend.claim("w", 100, 30, time.time())
    now_keys = [f"now-{i}" for i in range(50)] + ["now-one", "now-pickled", "now-once"]
    assert [row.key for row in rows] == ["scheduled", *now_keys]


async def test_a_job_due_at_once_is_claimable_at_any_time(make: Factory) -> None:
    # A claimer whose clock is behind the producer's still takes it (only the order uses
    # the time it was enqueued).
    backend = await make()
    await backend.enqueue([_job("a"), _job("b")])
    await backend.enqueue([_job("c")])
    rows = await backend.claim("w", 3, 30, time.time() - 3600)
    assert [row.key for row in rows] == ["a", "b", "c"]
    # So is a job re-queued at once.
    requeue = Transition("b", "{}", "queued", due=0.0, token=rows[1].token)
    assert await backend.finish([requeue]) == [True]
    assert [row.key for row in await backend.claim("w", 3, 30, time.time() - 3600)] == ["b"]


async def test_an_idle_wait_looks_for_a_delayed_retry(make: Factory) -> None:
    backend = await make()
    await backend.enqueue([_job("delayed"), _job("at-once")])
    rows = await backend.claim("w", 2, 30, time.time())
    due = time.time() + 3600
    retries = [
        Transition(r.key, "{}", "queued", due=due if r.key == "delayed" else 0.0, token=r.token)
        for r in rows
    ]
    assert await backend.finish(retries) == [True, True]
    # wait_for_work sleeps until the earliest due time of the jobs not due yet.
    assert await backend._next_due() == due


# Data stored before the upgrade


async def test_jobs_stored_before_the_token_migration_keep_working(
    url: str, admin: Any, schema: str
) -> None:
    files = load(schema)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.execute(files.queries["create_version_table"])
    old = [m for m in files.migrations if m.version < 4]
    for migration in old:
        await admin.execute(migration.sql)
        await admin.execute(
            f'INSERT INTO "{schema}".schema_version VALUES (%s, %s)',
            (migration.version, migration.name),
        )
    now = time.time()
    # As the code before the upgrade stored them: a claimed job, a scheduled job that is
    # due, two jobs queued at once after it, and a job scheduled for tomorrow.
    await admin.execute(
        f"""INSERT INTO "{schema}".jobs (queue, key, function, payload, status, due,
            attempts, started_ms, worker_id, run_id, lease_until)
        VALUES ('main', 'running', 't', '{{}}', 'active', 0, 1, %s, 'old', 1, %s),
               ('main', 'was-due', 't', '{{}}', 'queued', %s, 0, 0, NULL, NULL, 0),
               ('main', 'queued-1', 't', '{{}}', 'queued', 0, 0, 0, NULL, NULL, 0),
               ('main', 'queued-2', 't', '{{}}', 'queued', 0, 0, 0, NULL, NULL, 0),
               ('main', 'tomorrow', 't', '{{}}', 'queued', %s, 0, 0, NULL, NULL, 0)""",
        (int(now * 1000), now + 0.01, now - 10, now + 86400),
    )
    await admin.execute(
        f"""INSERT INTO "{schema}".runs (id, queue, key, function, attempt, worker_id, status,
            started_ms) VALUES (1, 'main', 'running', 't', 1, 'old', 'running', 0)"""
    )
    await admin.execute(f"""SELECT setval('"{schema}".runs_id_seq', 1)""")
    backend = PostgresBackend.from_url(url, "main")
    await backend.connect()  # migrates to the latest version
    try:
        await backend.enqueue([_job("new")])
        # The old jobs queued at once come first (their enqueue time is not known, and was
        # before), then the old scheduled job by its due time, then the new one.
        rows = await backend.claim("w", 10, 30, time.time())
        assert [row.key for row in rows] == ["queued-1", "queued-2", "was-due", "new"]
        # The old active job has no token: no token renews or finishes it ...
        assert (await backend.renew("w", [Lease("running", "1")], 30, now)).lost == ["running"]
        assert await backend.finish([_end("running", "1", "1")]) == [False]
        # ... until its lease expires and a recovery gives it one.
        [recovered] = await backend.recover("w2", 10, 30, now + 1)
        assert recovered.key == "running" and recovered.token is not None
        assert await backend.finish([_end("running", "1", recovered.token)]) == [True]
        assert (await _run(backend, "1"))[0] == "complete"
        cur = await admin.execute(f'SELECT max(version) FROM "{schema}".schema_version')
        assert await cur.fetchone() == (files.latest_version,)
        next_due = await backend._fetch("next_due", {"queue": "main", "now": time.time()})
        assert next_due == [(now + 86400,)]  # the scheduled job is found as before
    finally:
        await backend.disconnect()


async def test_a_job_finished_by_an_older_process_is_held_by_nobody(
    make: Factory, admin: Any, schema: str
) -> None:
    # During a rolling upgrade, a process of the previous version finishes jobs without
    # clearing their token: the status alone then says that nobody holds them.
    backend = await make()
    await backend.enqueue([_job("job")])
    row = await _claim_one(backend)
    await admin.execute(f"""UPDATE "{schema}".jobs SET status = 'complete' WHERE key = 'job'""")
    lease = Lease("job", row.token or "")
    assert await backend.renew("w", [lease], 30, time.time()) == Renewal(lost=["job"])
    assert await backend.update("job", '{"late":1}', row.token) is False
    assert await backend.finish([_end("job", row.run_id, row.token, "failed")]) == [False]
    assert await backend.recover("w2", 10, 30, time.time() + 60) == []
