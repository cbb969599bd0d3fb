"""The Redis backend's connections: more concurrent calls than its pool has connections, and
a server that is still loading its dataset when a queue connects."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis

from backends.test_redis import free_port, job, pings, redis_server, require_redis
from conveyor import Queue
from conveyor.backends.redis import RedisBackend
from conveyor.errors import BackendError
from conveyor.testing import wait_until
from conveyor.testing.backends import isolated_url, redis_url

# More calls than connections


async def test_more_concurrent_enqueues_than_connections_wait_for_one(tmp_path: Path) -> None:
    # 200 awaited enqueues at once on one queue: twice the pool's 100 connections.
    require_redis()
    queue = Queue.from_url(isolated_url("redis", tmp_path))
    try:
        await queue.connect()
        jobs = await asyncio.gather(*(queue.enqueue("noop", key=f"k{i}") for i in range(200)))
        assert all(j is not None for j in jobs)
        assert await queue.backend.count(["queued"]) == {"queued": 200}
    finally:
        await queue.backend.drop()
        await queue.disconnect()


async def test_a_full_pool_fails_after_pool_timeout_naming_the_settings(tmp_path: Path) -> None:
    require_redis()
    url = f"{isolated_url('redis', tmp_path)}&max_connections=1&pool_timeout=0.2"
    b = RedisBackend.from_url(url, "q")
    pool = b._redis.connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (1, 0.2)
    await b.connect()
    # The pool's one connection, busy elsewhere (redis-py 5.2 wants a command name).
    held = await pool.get_connection(*b._scripts.lines._get_args)
    try:
        # One call takes the backend's own connection, the other waits for the pool's.
        started = time.monotonic()
        results = await asyncio.gather(
            b.enqueue([job("a")]), b.enqueue([job("b")]), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], BackendError), results
        assert "max_connections=1" in str(errors[0]) and "pool_timeout" in str(errors[0])
        assert time.monotonic() - started >= 0.2
        # Given back while a call waits: the call goes on with it.
        waiting = asyncio.gather(b.enqueue([job("c")]), b.enqueue([job("d")]))
        await wait_until(lambda: pool._condition._waiters, message="a call waits for the pool")
        await pool.release(held)
        held = None
        assert await asyncio.wait_for(waiting, 10) == [[True], [True]]
    finally:
        if held is not None:
            await pool.release(held)
        await b.drop()
        await b.disconnect()


async def test_a_users_plain_pool_makes_calls_wait_too(tmp_path: Path) -> None:
    # redis-py's plain pool raises "Too many connections" at once; the backend waits.
    require_redis()
    prefix = isolated_url("redis", tmp_path).rsplit("prefix=", 1)[1]
    client = Redis.from_pool(ConnectionPool.from_url(redis_url(), max_connections=3))
    b = RedisBackend(client, "q", prefix, pool_timeout=0.2)
    try:
        await b.connect()
        flags = await asyncio.gather(*(b.enqueue([job(f"k{i}")]) for i in range(50)))
        assert flags == [[True]] * 50
        args = b._scripts.lines._get_args
        held = [await client.connection_pool.get_connection(*args) for _ in range(3)]
        try:
            results = await asyncio.gather(
                b.enqueue([job("x")]), b.enqueue([job("y")]), return_exceptions=True
            )
        finally:
            for conn in held:
                await client.connection_pool.release(conn)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and "max_connections=3" in str(errors[0]), results
    finally:
        await b.drop()
        await b.disconnect()
        await client.aclose()


def test_url_options_reach_the_backend_and_the_pool() -> None:
    b = RedisBackend.from_url(
        "redis://127.0.0.1:6379/3?prefix=p&pool_timeout=1.5&loading_timeout=7"
        "&max_connections=12&socket_timeout=4",
        "q",
    )
    pool = b._redis.connection_pool
    assert (pool.max_connections, pool.timeout, b._loading_timeout) == (12, 1.5, 7.0)
    assert pool.connection_kwargs["socket_timeout"] == 4.0
    assert pool.connection_kwargs["db"] == 3 and b.keys.prefix == "p"
    assert b._scripts.lines._pool_timeout == 1.5
    with pytest.raises(Exception, match="pool_timeout"):
        RedisBackend.from_url("redis://127.0.0.1:6379/0?pool_timeout=soon", "q")
    with pytest.raises(Exception, match="loading_timeout"):
        RedisBackend.from_url("redis://127.0.0.1:6379/0", "q", loading_timeout=-1)


# A server loading its dataset


#: Keys written before the restart, and the server's delay per key loaded (microseconds):
#: loading them takes about two seconds.
LOADED_KEYS = 20_000
KEY_LOAD_DELAY_US = 100


async def fill_and_restart(port: int, tmp_path: Path) -> tuple[str, ...]:
    """Write a dataset with the test's own server and save it; returns the options of a
    server that loads it slowly from ``tmp_path``."""
    options = ("--dir", str(tmp_path), "--dbfilename", "loading.rdb")
    probe = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        with redis_server(port, *options):
            await wait_until(lambda: pings(probe), message="redis-server up")
            pipe = probe.pipeline(transaction=False)
            for i in range(LOADED_KEYS):
                pipe.set(f"filler:{i}", "x" * 64)
            await pipe.execute()
            await probe.save()
    finally:
        await probe.aclose()
    return (
        *options,
        "--key-load-delay",
        str(KEY_LOAD_DELAY_US),
        "--loading-process-events-interval-bytes",
        "1024",
    )


async def loading(probe: Redis) -> bool:
    try:
        info = await probe.info("persistence")
    except Exception:
        return False
    return bool(int(info["loading"]))


async def test_connect_waits_while_the_server_loads_its_dataset(tmp_path: Path) -> None:
    port = free_port()
    options = await fill_and_restart(port, tmp_path)
    probe = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    queue = Queue.from_url(f"redis://127.0.0.1:{port}/0?prefix=loading")
    try:
        with redis_server(port, *options):
            await wait_until(lambda: loading(probe), message="the server is loading")
            await queue.connect()
            assert not await loading(probe)  # connected only once the dataset was loaded
            assert await probe.dbsize() == LOADED_KEYS  # not lost: it was waited for
            job_ = await queue.enqueue("noop", key="after")
            assert job_ is not None
            assert await queue.backend.count(["queued"]) == {"queued": 1}
    finally:
        await queue.disconnect()
        await probe.aclose()


async def test_connect_gives_up_after_loading_timeout(tmp_path: Path) -> None:
    port = free_port()
    options = await fill_and_restart(port, tmp_path)
    probe = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    b = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0?prefix=loading&loading_timeout=0.3", "q")
    try:
        with redis_server(port, *options):
            await wait_until(lambda: loading(probe), message="the server is loading")
            started = time.monotonic()
            with pytest.raises(BackendError, match=r"still loading its dataset.*loading_timeout"):
                await b.connect()
            assert 0.3 <= time.monotonic() - started < 5
            assert await loading(probe)
    finally:
        await b.disconnect()
        await probe.aclose()
