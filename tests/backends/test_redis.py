"""The Redis backend against a real server: key scheme, scripts, batches, notifications,
and a server restart."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from conveyor.backends import backend_from_url
from conveyor.backends.base import Lease, LogLine, NewJob, RunEnd, RunFilter, Transition
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.keys import KeyScheme
from conveyor.errors import BackendError, ConfigurationError
from conveyor.testing import wait_until
from conveyor.testing.backends import isolated_url, redis_url
from conveyor.testing.fixtures import backend_url_for, require_backend


def require_redis() -> None:
    require_backend("redis")


def kind_url(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    """An isolated URL on the Redis server ("redis") or the Redis Cluster ("redis-cluster",
    started once per session)."""
    if kind == "redis-cluster":
        request.getfixturevalue("conveyor_redis_cluster")
    return backend_url_for(kind, tmp_path)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RedisBackend]:
    require_redis()
    b = RedisBackend.from_url(isolated_url("redis", tmp_path), "q")
    await b.connect()
    try:
        yield b
    finally:
        await b.drop()
        await b.disconnect()


def job(key: str, priority: int = 0, due: float = 0.0, group: str | None = None) -> NewJob:
    return NewJob(
        key=key, function="fn", payload=key.encode(), priority=priority, due=due, group_key=group
    )


def done(key: str, run_id: str | None, status: str = "complete", **kw: object) -> Transition:
    run_status = "retried" if status == "queued" else status
    run = RunEnd(run_id, run_status, int(time.time() * 1000)) if run_id else None
    return Transition(key=key, payload=b"done", status=status, run=run, **kw)  # type: ignore[arg-type]


async def own_keys(b: RedisBackend) -> list[bytes]:
    return [k async for k in b._redis.scan_iter(match=b.keys.everything_pattern())]


# Construction


async def test_from_url_strips_prefix_and_accepts_a_client(tmp_path: Path) -> None:
    require_redis()
    url = isolated_url("redis", tmp_path)
    b = backend_from_url(url, "q")
    assert isinstance(b, RedisBackend)
    assert b.keys.prefix.startswith("test-") and b.describe()["engine"] == "redis"
    client = Redis.from_url(redis_url())
    mine = RedisBackend.from_url("redis://ignored", "q", redis=client, prefix=b.keys.prefix)
    await mine.connect()
    assert await mine.enqueue([job("a")]) == [True]
    await b.connect()
    assert [r.key if r else None for r in await b.get(["a"])] == ["a"]
    await mine.drop()
    await mine.disconnect()
    assert await client.ping()  # a client the user built is not closed
    await client.aclose()
    await b.disconnect()


def test_unusable_clients_and_names_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisBackend(Redis(decode_responses=True), "q")
    with pytest.raises(ConfigurationError, match="braces"):
        KeyScheme("conveyor", "a{b}")
    with pytest.raises(ConfigurationError, match="non-empty"):
        KeyScheme("conveyor", "")


async def test_every_key_of_a_queue_is_in_one_slot(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("a", group="g"), job("b", group="g"), job("later", due=now + 60)])
    await backend.enqueue([NewJob("c", "fn", b"c", once="tok", once_ttl=60)])
    rows = await backend.claim("w", 10, 30, now)
    await backend.claim("w", 10, 30, now)  # parks "b" behind its busy group
    await backend.append_logs([LogLine(rows[0].run_id or "", 1, now, "INFO", "hi")])
    await backend.put_worker("w", b"{}", 10)
    await backend.finish([done(r.key, r.run_id, expire_at=now + 60) for r in rows[1:]])
    await backend.wait_for_finish(["a"], 0.01)
    keys = await own_keys(backend)
    assert len(keys) >= 15, keys
    assert {key_slot(k) for k in keys} == {key_slot(backend.keys.key("ready").encode())}
    assert all(k.startswith(backend.keys.base.encode()) for k in keys)


async def test_drop_deletes_only_its_own_prefix(backend: RedisBackend, tmp_path: Path) -> None:
    other = RedisBackend.from_url(isolated_url("redis", tmp_path), "q")
    await other.connect()
    try:
        await other.enqueue([job("keep")])
        await backend.enqueue([job("gone")])
        await backend.drop()
        assert await own_keys(backend) == []
        assert [r is not None for r in await other.get(["keep"])] == [True]
    finally:
        await other.drop()
        await other.disconnect()


# Claiming and finishing in batches


async def test_claim_batch_orders_by_priority_due_and_insertion(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("p5-a", 5), job("p1-a", 1), job("p5-b", 5), job("p1-b", 1)])
    await backend.enqueue([job("p1-due", 1, due=now - 30), job("p0-future", 0, due=now + 60)])
    rows = await backend.claim("w", 4, 30, now)
    assert [r.key for r in rows] == ["p1-a", "p1-b", "p1-due", "p5-a"]
    assert {r.status for r in rows} == {"active"} and {r.attempts for r in rows} == {1}
    assert len({r.run_id for r in rows}) == 4
    assert [r.key for r in await backend.claim("w", 10, 30, now)] == ["p5-b"]
    assert [r.key for r in await backend.claim("w", 10, 30, now + 61)] == ["p0-future"]


async def test_group_key_allows_one_active_and_keeps_the_rest(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue(
        [
            job("g1", group="g"),
            job("g2", group="g"),
            job("free"),
            job("g3", group="g"),
            job("h1", group="h"),
        ]
    )
    first = await backend.claim("w", 10, 30, now)
    assert [r.key for r in first] == ["g1", "free", "h1"]
    assert await backend.claim("w", 10, 30, now) == []
    counts = await backend.count(["queued", "active"])
    assert counts == {"queued": 2, "active": 3}
    g1 = first[0]
    await backend.finish([done("g1", g1.run_id)])
    second = await backend.claim("w", 10, 30, now)
    assert [r.key for r in second] == ["g2"]
    # A retried group job releases the group too; the best queued one runs next.
    await backend.finish([done("g2", second[0].run_id, status="queued")])
    assert [r.key for r in await backend.claim("w", 10, 30, now)] == ["g3"]


async def test_aborting_a_parked_job_passes_the_turn_on(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("g1", group="g"), job("g2", group="g"), job("g3", group="g")])
    [g1] = await backend.claim("w", 10, 30, now)
    assert await backend.claim("w", 10, 30, now) == []
    await backend.finish([done("g1", g1.run_id)])  # g2 is released to ready
    assert await backend.abort("g2", b"aborted", now) == "queued"
    assert [r.key for r in await backend.claim("w", 10, 30, now)] == ["g3"]


async def test_finish_batch_applies_each_transition(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job(k) for k in ("keep", "ttl", "drop", "retry", "later")])
    rows = {r.key: r for r in await backend.claim("w", 10, 30, now)}
    await backend.finish(
        [
            done("keep", rows["keep"].run_id),
            done("ttl", rows["ttl"].run_id, status="failed", expire_at=now + 100),
            done("drop", rows["drop"].run_id, delete=True),
            done("retry", rows["retry"].run_id, status="queued"),
            done("later", rows["later"].run_id, status="queued", due=now + 50),
        ]
    )
    got = {k: r for k, r in zip(rows, await backend.get(list(rows)), strict=True)}
    assert got["drop"] is None
    assert {k: r.status for k, r in got.items() if r} == {
        "keep": "complete",
        "ttl": "failed",
        "retry": "queued",
        "later": "queued",
    }
    assert got["retry"] is not None and got["retry"].worker_id is None
    assert await backend._redis.pttl(backend.keys.job("keep")) == -1
    assert 0 < await backend._redis.pttl(backend.keys.job("ttl")) <= 100_000
    counts = await backend.count(["queued", "scheduled", "active", "complete", "failed"])
    assert counts == {"queued": 2, "scheduled": 1, "active": 0, "complete": 1, "failed": 1}
    assert [r.key for r in await backend.claim("w", 10, 30, now)] == ["retry"]
    assert [r.key for r in await backend.claim("w", 10, 30, now + 51)] == ["later"]
    runs, total = await backend.list_runs(RunFilter(status="retried"), 0, 10)
    assert total == 2 and {r.key for r in runs} == {"retry", "later"}
    # A finished key is replaced by a new enqueue.
    assert await backend.enqueue([job("keep")]) == [True]


async def test_enqueue_dedups_incomplete_keys_and_once_marks(backend: RedisBackend) -> None:
    assert await backend.enqueue([job("a"), job("a")]) == [True, False]
    once = [
        NewJob("x1", "fn", b"", once="slot", once_ttl=60),
        NewJob("x2", "fn", b"", once="slot", once_ttl=60),
    ]
    assert await backend.enqueue(once) == [True, False]
    assert 0 < await backend._redis.pttl(backend.keys.mark("slot")) <= 60_000


async def test_renew_recover_and_abort(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("a"), job("b")])
    a, b = await backend.claim("w1", 2, 10, now)
    leases = [Lease("a", a.token or ""), Lease("b", b.token or "")]
    renewal = await backend.renew("w1", [*leases, Lease("gone", "1")], 10, now + 5)
    assert (renewal.aborting, renewal.lost) == ([], ["gone"])
    assert await backend.abort("b", b"stop", now) == "active"
    assert (await backend.renew("w1", leases, 10, now + 5)).aborting == ["b"]
    assert await backend.recover("w2", 10, 10, now + 14) == []  # renewed until now + 15
    rows = await backend.recover("w2", 10, 10, now + 16)
    assert sorted((r.key, r.status, r.worker_id) for r in rows) == [
        ("a", "active", "w2"),
        ("b", "aborting", "w2"),
    ]
    assert {r.run_id for r in rows} == {a.run_id, b.run_id}
    assert (await backend.renew("w1", leases, 10, now + 16)).lost == ["a", "b"]
    assert await backend.recover("w3", 10, 10, now + 20) == []  # w2 holds them now


async def test_expire_cleans_rows_redis_dropped(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([job("short"), job("long")])
    rows = {r.key: r for r in await backend.claim("w", 2, 30, now)}
    await backend.finish(
        [
            done("short", rows["short"].run_id, expire_at=time.time() + 0.05),
            done("long", rows["long"].run_id, expire_at=now + 3600),
        ]
    )
    await wait_until(lambda: _missing(backend, "short"), message="short row expired")
    assert await backend.expire(time.time(), 100) == 1
    assert [r.key for r in await backend.list_jobs(None, 0, 10)] == ["long"]
    assert await backend.count(["complete"]) == {"complete": 1}


async def _missing(backend: RedisBackend, key: str) -> bool:
    return (await backend.get([key])) == [None]


# Runs and logs


async def test_runs_paginate_with_totals_and_logs_round_trip(backend: RedisBackend) -> None:
    now = time.time()
    await backend.enqueue([NewJob(f"j{i}", "even" if i % 2 == 0 else "odd", b"") for i in range(6)])
    rows = await backend.claim("w", 6, 30, now)
    await backend.finish(
        [
            done(r.key, r.run_id, status="failed" if i < 2 else "complete")
            for i, r in enumerate(rows)
        ]
    )
    all_runs, total = await backend.list_runs(RunFilter(), 0, 4)
    assert (
        total == 6
        and [int(r.run_id) for r in all_runs]
        == sorted((int(r.run_id or 0) for r in rows), reverse=True)[:4]
    )
    page, total = await backend.list_runs(RunFilter(function="even"), 1, 2)
    assert total == 3 and len(page) == 2 and {r.function for r in page} == {"even"}
    both, total = await backend.list_runs(RunFilter(status="failed", function="odd"), 0, 10)
    assert total == 1 and both[0].key == "j1"
    by_key, total = await backend.list_runs(RunFilter(key="j3"), 0, 10)
    assert total == 1 and by_key[0].run_id == rows[3].run_id
    run_id = rows[0].run_id or ""
    lines = [LogLine(run_id, i, now + i, "INFO", f"line {i}\x1f\n", b"x" * i) for i in range(5)]
    await backend.append_logs(lines[3:] + lines[:3])
    assert await backend.read_logs(run_id, 1, 2) == lines[2:4]
    assert await backend.purge_runs(int(now * 1000) + 10_000, 100) == 6
    assert await backend.get_run(run_id) is None
    assert await backend.read_logs(run_id, 0, 10) == []


# Waiting


async def test_wait_for_work_wakes_on_enqueue_and_on_due_time(backend: RedisBackend) -> None:
    await backend.claim("w", 1, 30, time.time())  # clears stale wake-up tokens
    waiter = asyncio.create_task(backend.wait_for_work(60))
    await asyncio.sleep(0)
    await backend.enqueue([job("a")])
    await wait_until(waiter.done, timeout=10, message="woken by enqueue")
    await backend.claim("w", 10, 30, time.time())
    await backend.enqueue([job("soon", due=time.time() + 0.2)])
    await backend.wait_for_work(0)  # consume the enqueue's token
    waiter = asyncio.create_task(backend.wait_for_work(60))
    await wait_until(waiter.done, timeout=10, message="woken by the due time")


async def test_cancelled_wait_does_not_lose_a_wake_up(backend: RedisBackend) -> None:
    await backend.claim("w", 1, 30, time.time())
    waiter = asyncio.create_task(backend.wait_for_work(60))
    await wait_until(lambda: backend._pop is not None, message="BLPOP started")
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    await backend.enqueue([job("a")])
    waiter = asyncio.create_task(backend.wait_for_work(60))
    await wait_until(waiter.done, timeout=10, message="woken by the earlier enqueue")


async def test_wait_for_finish_wakes_waiters_of_announced_keys(backend: RedisBackend) -> None:
    await backend.enqueue([job("a"), job("b")])
    await backend.wait_for_finish(["a"], 5)  # first call subscribes
    rows = {r.key: r for r in await backend.claim("w", 2, 30, time.time())}
    await backend.get(["a", "b"])
    waiting_a = asyncio.create_task(backend.wait_for_finish(["a"], 60))
    waiting_b = asyncio.create_task(backend.wait_for_finish(["b"], 60))
    await asyncio.sleep(0)  # both register
    await backend.finish([done("a", rows["a"].run_id)])
    await wait_until(waiting_a.done, timeout=10, message="waiter of a woken")
    assert not waiting_b.done()
    await backend.update("b", b"progress")
    await wait_until(waiting_b.done, timeout=10, message="waiter of b woken by update")


async def test_announcement_between_read_and_wait_is_not_lost(backend: RedisBackend) -> None:
    await backend.enqueue([job("a")])
    await backend.wait_for_finish(["a"], 5)
    [row] = await backend.claim("w", 1, 30, time.time())
    await backend.get(["a"])
    await backend.finish([done("a", row.run_id)])
    await wait_until(lambda: backend._listener._announced.get("a"), message="announced")
    await asyncio.wait_for(backend.wait_for_finish(["a"], 60), 10)


# A server restart


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(port: int, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of the test's own on ``port`` (killed at the end)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    args = [server, "--port", str(port), "--save", "", "--appendonly", "no", *options]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def pings(client: Redis) -> bool:
    try:
        return bool(await client.ping())
    except Exception:
        return False


async def test_server_restart_raises_backend_errors_then_recovers() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0?prefix=restart"
    probe = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    b = RedisBackend.from_url(url, "q")
    try:
        with redis_server(port) as server:
            await wait_until(lambda: pings(probe), message="redis-server up")
            await b.connect()
            assert await b.enqueue([job("a")]) == [True]
            await b.claim("w", 10, 30, time.time())  # no wake-up tokens left
            await b.wait_for_finish(["a"], 5)  # the listener is subscribed
            waiter = asyncio.create_task(b.wait_for_work(60))
            await wait_until(lambda: _blocked_clients(probe), message="BLPOP in flight")
            server.kill()
            server.wait()
            await wait_until(waiter.done, message="the blocked wait returned")
            assert waiter.exception() is None
            with pytest.raises(BackendError):
                await b.enqueue([job("b")])
            with pytest.raises(BackendError):
                await b.claim("w", 10, 30, time.time())
            await b.wait_for_work(0.2)  # a timed wait instead of an error
        with redis_server(port):
            await wait_until(lambda: pings(probe), message="redis-server back")
            # Jobs are gone (no persistence), but everything works again by itself.
            await wait_until(lambda: _claims_after_enqueue(b), message="enqueue and claim")
            await wait_until(lambda: _woken_by_enqueue(b, probe), timeout=20, message="woken")
            await wait_until(lambda: _finish_wakes_waiter(b, probe), timeout=20, message="listener")
    finally:
        await b.disconnect()
        await probe.aclose()


async def _blocked_clients(probe: Redis) -> bool:
    info = await probe.info("clients")
    return int(info["blocked_clients"]) > 0


async def _claims_after_enqueue(b: RedisBackend) -> bool:
    try:
        await b.enqueue([job("again")])
        rows = await b.claim("w", 10, 30, time.time())
    except BackendError:
        return False
    await b.finish([done(r.key, r.run_id) for r in rows])
    return [r.key for r in rows] == ["again"]


async def _woken_by_enqueue(b: RedisBackend, probe: Redis) -> bool:
    """One wait blocked in BLPOP, then woken by an enqueue (retried if it returned early)."""
    waiter = asyncio.create_task(b.wait_for_work(30))
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: waiter.done() or _blocked_clients(probe), timeout=2)
    if waiter.done():
        return False  # a spurious return (reconnecting): try again
    await b.enqueue([job("wake")])
    await asyncio.wait_for(waiter, 10)
    await b.claim("w", 10, 30, time.time())
    return True


async def _finish_wakes_waiter(b: RedisBackend, probe: Redis) -> bool:
    await b.enqueue([job("f")])
    rows = await b.claim("w", 10, 30, time.time())
    await b.get(["f"])
    waiter = asyncio.create_task(b.wait_for_finish(["f"], 30))
    subscribed = await probe.pubsub_numsub(b.keys.channel)
    await b.finish([done(r.key, r.run_id) for r in rows])
    if not subscribed or subscribed[0][1] == 0:
        await waiter
        return False
    await asyncio.wait_for(waiter, 10)
    return True


def test_url_schemes_and_options_reach_the_client() -> None:
    unix = RedisBackend.from_url("unix:///tmp/conveyor-test.sock?db=2&prefix=app", "jobs")
    kwargs = unix._redis.connection_pool.connection_kwargs
    assert (kwargs["path"], kwargs["db"], unix.keys.prefix) == ("/tmp/conveyor-test.sock", 2, "app")
    assert unix.describe()["address"] == "/tmp/conveyor-test.sock"
    # The address is passed on as written (redis-py 8 refuses unix:/path), with or
    # without options left for redis-py.
    bare = RedisBackend.from_url("unix:///tmp/conveyor-test.sock?prefix=app", "jobs")
    assert bare._redis.connection_pool.connection_kwargs["path"] == "/tmp/conveyor-test.sock"
    tls = RedisBackend.from_url("rediss://:secret@example.invalid:6380/1", "jobs")
    assert tls._redis.connection_pool.connection_class.__name__ == "SSLConnection"
    assert tls.keys.prefix == "conveyor" and "secret" not in repr(tls.describe())


async def test_cancelling_a_task_inside_an_operation_always_cancels_it(
    backend: RedisBackend,
) -> None:
    # redis-py sends through asyncio.wait_for, which on Python 3.11 can drop a cancellation.
    async def busy() -> None:
        while True:
            await backend.put_worker("w", b"{}", 10)
            await backend.count(["queued"])
            await backend.wait_for_finish(["k"], 0.001)

    for spins in range(30):
        task = asyncio.create_task(busy())
        for _ in range(spins):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
