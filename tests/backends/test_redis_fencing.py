"""Fencing tokens and claim order on the Redis backend, called directly, in both forms of the
scripts (the function library and EVALSHA), on one server and on a Redis Cluster: every
write about a claimed job is checked against the claim's token in the script that would
write."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.test_redis import done, job, kind_url
from conveyor.backends.base import Lease, LogLine, RunFilter
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.scripts import sources
from conveyor.testing import wait_until


@pytest.fixture(
    params=[
        ("redis", "function-library"),
        ("redis", "evalsha"),
        ("redis-cluster", "function-library"),
        ("redis-cluster", "evalsha"),
    ],
    ids="-".join,
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RedisBackend]:
    kind, form = request.param
    b = RedisBackend.from_url(kind_url(request, kind, tmp_path), "q")
    await b.connect()
    if form == "evalsha":  # as on Redis 6, or where an ACL refuses FUNCTION
        pipe = b._redis.pipeline(transaction=False)
        for text in sources().values():
            pipe.script_load(text)
        await pipe.execute()
        b._scripts._use(None)
    assert b._scripts.functions is (form == "function-library")
    try:
        yield b
    finally:
        await b.drop()
        await b.disconnect()


async def stored(b: RedisBackend, key: str, *fields: str) -> list[str | None]:
    values = await b._redis.hmget(b.keys.job(key), list(fields))
    return [v.decode() if v is not None else None for v in values]


async def lease_score(b: RedisBackend, key: str) -> float | None:
    score = await b._redis.zscore(b.keys.key("leases"), key)
    return None if score is None else float(score)


# Tokens


async def test_claim_gives_each_job_a_new_token_never_reused(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("a"), job("b")])
    first = await backend.claim("w", 2, 30, now)
    assert all(r.token and r.token == r.run_id for r in first)
    # The key enqueued again after it finished, and a recovery in between: every token is new.
    [recovered] = await backend.recover("w2", 1, 30, now + 31)
    assert await backend.finish([done("a", first[0].run_id, token=recovered.token)]) == [True]
    assert await backend.enqueue([job("a")]) == [True]
    [again] = await backend.claim("w", 1, 30, now)
    tokens = [first[0].token, first[1].token, recovered.token, again.token]
    assert len(set(tokens)) == 4 and None not in tokens


async def test_recover_gives_a_new_token_and_the_dead_owners_stops_working(
    backend: RedisBackend,
) -> None:
    now = time.time()
    await backend.enqueue([job("a")])
    [dead] = await backend.claim("w1", 1, 10, now)
    [taken] = await backend.recover("w2", 10, 10, now + 11)
    assert (taken.key, taken.worker_id, taken.run_id) == ("a", "w2", dead.run_id)
    assert taken.token and taken.token != dead.token
    assert await stored(backend, "a", "token") == [taken.token]
    # The dead owner: renew, update and finish are all refused; the new owner's work.
    renewal = await backend.renew("w1", [Lease("a", dead.token or "")], 10, now + 12)
    assert (renewal.lost, renewal.aborting) == (["a"], [])
    assert not await backend.update("a", b"stale", token=dead.token)
    assert await backend.finish([done("a", dead.run_id, token=dead.token)]) == [False]
    assert await backend.finish([done("a", dead.run_id, token=taken.token)]) == [True]


# finish


async def test_a_stale_finish_is_refused_and_stores_nothing(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("a")])
    [dead] = await backend.claim("w1", 1, 10, now)
    [taken] = await backend.recover("w2", 1, 10, now + 11)
    before = await stored(backend, "a", "status", "payload", "seq", "worker_id", "token")
    await backend.get(["a"])
    await backend.wait_for_finish(["a"], 5)  # the listener is subscribed
    stale = [
        done("a", dead.run_id, token=dead.token),
        done("a", dead.run_id, status="queued", token=dead.token),
        done("a", dead.run_id, status="failed", expire_at=now + 60, token=dead.token),
        done("a", dead.run_id, delete=True, token=dead.token),
    ]
    assert await backend.finish(stale) == [False] * 4
    assert await stored(backend, "a", "status", "payload", "seq", "worker_id", "token") == before
    run = await backend.get_run(dead.run_id or "")
    assert run is not None and (run.status, run.finished_ms) == ("running", 0)
    assert await lease_score(backend, "a") == pytest.approx(now + 21)
    assert await backend.count(["active", "queued", "complete"]) == {
        "active": 1,
        "queued": 0,
        "complete": 0,
    }
    messages = backend._listener._count
    assert await backend.finish([done("a", dead.run_id, token=taken.token)]) == [True]
    # The channel keeps order: had the stale finish announced "a", it would have come first.
    await wait_until(lambda: backend._listener._announced.get("a"), message="announced")
    assert backend._listener._count == messages + 1
    [row] = await backend.get(["a"])
    assert row is not None and (row.status, row.payload) == ("complete", b"done")


async def test_the_same_finish_twice_is_applied_once(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("a"), job("b")])
    a, b = await backend.claim("w", 2, 30, now)
    # In one batch, and in a later call: applying clears the token.
    twice = [done("a", a.run_id, status="queued", token=a.token)] * 2
    assert await backend.finish(twice) == [True, False]
    assert await backend.finish([done("b", b.run_id, token=b.token)]) == [True]
    assert await backend.finish([done("b", b.run_id, status="failed", token=b.token)]) == [False]
    assert [r.status if r else None for r in await backend.get(["a", "b"])] == [
        "queued",
        "complete",
    ]
    assert await stored(backend, "a", "token") == [""]
    runs, total = await backend.list_runs(RunFilter(key="b"), 0, 10)
    assert total == 1 and runs[0].status == "complete"
    # The re-queued job is claimed again under a new token; the old one stays refused.
    [again] = await backend.claim("w", 1, 30, now)
    assert again.key == "a" and again.token != a.token
    assert await backend.finish([done("a", a.run_id, token=a.token)]) == [False]


async def test_a_finish_without_token_applies_to_whatever_is_stored(
    backend: RedisBackend,
) -> None:
    now = time.time()
    await backend.enqueue([job("a"), job("queued")])
    [a] = await backend.claim("w", 1, 30, now)
    assert await backend.finish([done("a", a.run_id), done("queued", None, status="aborted")]) == [
        True,
        True,
    ]
    # A missing job: not applied, but its run's end is stored.
    await backend.enqueue([job("gone")])
    [gone] = await backend.claim("w", 1, 30, now)
    await backend._redis.delete(backend.keys.job("gone"))
    assert await backend.finish([done("gone", gone.run_id, status="failed")]) == [False]
    run = await backend.get_run(gone.run_id or "")
    assert run is not None and run.status == "failed"
    assert await backend.finish([done("never", None, token="1")]) == [False]
    assert await backend.finish([]) == []


async def test_finish_with_logs_stores_the_lines_even_when_refused(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("a")])
    [dead] = await backend.claim("w1", 1, 10, now)
    [taken] = await backend.recover("w2", 1, 10, now + 11)
    run_id = dead.run_id or ""
    line = (run_id, 1, now, "INFO", "late line", b"")
    applied = await backend.finish_with_logs([done("a", run_id, token=dead.token)], [line])
    assert applied == [False]
    assert await backend.read_logs(run_id, 0, 10) == [LogLine(*line)]
    line2 = (run_id, 2, now, "INFO", "last line", b"")
    assert await backend.finish_with_logs([done("a", run_id, token=taken.token)], [line2]) == [True]
    assert [ln.seq for ln in await backend.read_logs(run_id, 0, 10)] == [1, 2]


# renew


async def test_renew_extends_held_leases_and_reports_aborting_and_lost(
    backend: RedisBackend,
) -> None:
    now = time.time()
    await backend.enqueue([job(k) for k in ("a", "b", "done", "stolen")])
    rows = {r.key: r for r in await backend.claim("w1", 4, 10, now)}
    tokens = {k: r.token or "" for k, r in rows.items()}
    assert await backend.abort("b", b"stop", now) == "active"
    assert await backend.finish([done("done", rows["done"].run_id, token=tokens["done"])]) == [True]
    await backend._redis.hset(backend.keys.job("stolen"), "token", "999999")  # a new owner's
    leases = [Lease(k, tokens[k]) for k in ("a", "b", "done", "stolen")]
    leases += [Lease("a", "wrong"), Lease("missing", "1")]
    renewal = await backend.renew("w1", leases, 10, now + 5)
    assert renewal.aborting == ["b"]
    assert renewal.lost == ["done", "stolen", "a", "missing"]
    assert await lease_score(backend, "a") == pytest.approx(now + 15)
    assert await lease_score(backend, "b") == pytest.approx(now + 15)
    assert await lease_score(backend, "stolen") == pytest.approx(now + 10)  # left alone
    assert await stored(backend, "stolen", "touched_ms") == [str(int(now * 1000))]
    assert await stored(backend, "a", "touched_ms") == [str(int((now + 5) * 1000))]
    assert (await backend.renew("w1", [], 10, now)).lost == []


async def test_an_expired_lease_nobody_recovered_is_still_held(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("a"), job("b")])
    a, b = await backend.claim("w1", 2, 10, now)
    renewal = await backend.renew("w1", [Lease("a", a.token or "")], 10, now + 60)
    assert (renewal.lost, renewal.aborting) == ([], [])
    assert await backend.update("b", b"progress", token=b.token)
    assert await backend.finish([done("b", b.run_id, token=b.token)]) == [True]


# update


async def test_update_with_a_token_is_stored_only_while_held(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("a"), job("q")])
    [a] = await backend.claim("w1", 1, 10, now)
    assert await backend.update("a", b"mine", token=a.token)
    assert not await backend.update("a", b"wrong", token="123456")
    assert not await backend.update("q", b"queued", token=a.token)  # queued: held by nobody
    assert not await backend.update("missing", b"x", token=a.token)
    assert [r.payload if r else None for r in await backend.get(["a", "q"])] == [b"mine", b"q"]
    [taken] = await backend.recover("w2", 1, 10, now + 11)
    assert not await backend.update("a", b"stale", token=a.token)
    assert await backend.update("a", b"new owner", token=taken.token)
    assert await backend.update("q", b"no token")  # without a token: any existing job
    assert not await backend.update("missing", b"x")
    assert [r.payload if r else None for r in await backend.get(["a", "q"])] == [
        b"new owner",
        b"no token",
    ]


# Data stored before fencing


async def test_a_job_claimed_before_tokens_existed_is_recovered_with_one(
    backend: RedisBackend,
) -> None:
    # An active job as the previous version left it: no token in its hash. Its owner can
    # neither renew nor finish it under a token; its lease runs out and recover gives it one.
    now = time.time()
    await backend.enqueue([job("old")])
    [old] = await backend.claim("w1", 1, 10, now)
    await backend._redis.hdel(backend.keys.job("old"), "token")
    renewal = await backend.renew("w1", [Lease("old", old.run_id or "")], 10, now + 5)
    assert renewal.lost == ["old"]
    assert await backend.finish([done("old", old.run_id, token=old.run_id)]) == [False]
    [taken] = await backend.recover("w2", 1, 10, now + 11)
    assert taken.token and taken.token != old.run_id
    assert await backend.finish([done("old", old.run_id, token=taken.token)]) == [True]


# Claim order


async def test_a_job_due_earlier_is_claimed_before_later_immediate_ones(
    backend: RedisBackend,
) -> None:
    # A job scheduled in the past (a cron catch-up, say) is due from its enqueue on: it sorts
    # by that time, before the 50 jobs enqueued after it with the same priority.
    await backend.enqueue([job("late", due=time.time() - 30)])
    await backend.enqueue([job(f"now{i}") for i in range(25)])
    for i in range(25, 50):
        await backend.enqueue([job(f"now{i}")])
    rows = await backend.claim("w", 51, 30, time.time())
    assert [r.key for r in rows] == ["late"] + [f"now{i}" for i in range(50)]


async def test_a_retry_that_became_due_sorts_before_later_immediate_jobs(
    backend: RedisBackend,
) -> None:
    await backend.enqueue([job("retry"), job("again")])
    retry, again = await backend.claim("w", 2, 30, time.time())
    due = time.time() + 0.02
    # A retry with a delay, and one with none (due 0: the re-queue time).
    await backend.finish([done("retry", retry.run_id, status="queued", due=due, token=retry.token)])
    await backend.finish([done("again", again.run_id, status="queued", token=again.token)])
    await wait_until(lambda: time.time() > due + 0.001, message="the retry is due")
    await backend.enqueue([job(f"now{i}") for i in range(50)])
    rows = await backend.claim("w", 52, 30, time.time())
    # "again" was re-queued before the delayed retry became due; both before the 50.
    assert [r.key for r in rows] == ["again", "retry"] + [f"now{i}" for i in range(50)]


async def test_claim_order_is_priority_then_due_then_insertion(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("p1-later", 1, due=now + 5), job("p0-later", 0, due=now + 10)])
    await backend.enqueue([job("p1-a", 1), job("p0-a", 0, group="g")])
    await backend.enqueue([job("p0-past", 0, due=now - 60), job("p1-b", 1)])
    rows = await backend.claim("w", 10, 30, now + 20)
    assert [r.key for r in rows] == ["p0-a", "p0-past", "p0-later", "p1-a", "p1-b", "p1-later"]
