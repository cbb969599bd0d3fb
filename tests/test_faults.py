"""The fault-injection kit: a proxy that pauses, cuts, slows and drops real servers' traffic,
and a worker process that is killed, stalled and resumed.

Each test owns its Redis keys, PostgreSQL schema or SQLite file and removes only those.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from conveyor.job import Status
from conveyor.queue import Queue
from conveyor.testing import wait_until
from conveyor.testing.backends import isolated_url, postgres_url, redis_url
from conveyor.testing.faults import FaultProxy, WorkerProcess
from conveyor.testing.fixtures import backend_url_for, require_backend

#: The client timeout of a request that must hang; also the longest wait on a condition
#: that must stay false.
HANG_S = 0.3
#: Seconds until a job becomes due, in a test that stalls a worker meanwhile.
DUE_IN_S = 0.4
#: The asyncio clock may fire a timer this much early.
CLOCK_SLACK_S = 0.005


def token() -> str:
    return uuid.uuid4().hex[:10]


# Redis


@pytest.fixture
def redis_proxy() -> Iterator[FaultProxy]:
    require_backend("redis")
    with FaultProxy.for_url(redis_url()) as proxy:
        yield proxy


@pytest.fixture
async def direct_redis() -> AsyncIterator[redis.asyncio.Redis]:
    """A client that bypasses the proxy."""
    require_backend("redis")
    client = redis.asyncio.Redis.from_url(redis_url())
    yield client
    await client.aclose()


@pytest.fixture
async def key(direct_redis: redis.asyncio.Redis) -> AsyncIterator[str]:
    """A Redis key of the test's own, deleted at the end."""
    name = f"test-faults-{token()}"
    yield name
    await direct_redis.delete(name)


def proxied_redis(proxy: FaultProxy, **options: Any) -> redis.asyncio.Redis:
    """A client through the proxy that never retries, so each fault reaches the test."""
    return redis.asyncio.Redis.from_url(
        proxy.url(redis_url()), retry=Retry(NoBackoff(), 0), **options
    )


async def test_redis_commands_hang_while_paused_and_complete_after_resume(
    redis_proxy: FaultProxy, direct_redis: redis.asyncio.Redis, key: str
) -> None:
    impatient = proxied_redis(redis_proxy, socket_timeout=HANG_S)
    patient = proxied_redis(redis_proxy)
    try:
        assert await impatient.ping()
        redis_proxy.pause()
        # A new connection made while paused: accepted, its handshake held back.
        held = asyncio.ensure_future(patient.set(key, "after resume"))
        with pytest.raises(redis.TimeoutError):
            await impatient.get(key)
        assert not held.done()
        assert await direct_redis.get(key) is None
        assert redis_proxy.connections == 2

        redis_proxy.resume()
        assert await asyncio.wait_for(held, 10)
        assert await direct_redis.get(key) == b"after resume"
        assert await impatient.get(key) == b"after resume"
    finally:
        await impatient.aclose()
        await patient.aclose()


async def test_redis_commands_fail_while_cut_and_succeed_after_heal(
    redis_proxy: FaultProxy,
) -> None:
    client = proxied_redis(redis_proxy)
    other = proxied_redis(redis_proxy)
    try:
        assert await client.ping() and await other.ping()
        assert redis_proxy.connections == 2

        redis_proxy.cut()
        assert redis_proxy.connections == 0
        with pytest.raises(redis.ConnectionError):
            await client.ping()  # its open connection was closed
        with pytest.raises(redis.ConnectionError):
            await client.ping()  # a new connection is closed on accept

        redis_proxy.heal()
        assert await client.ping()
        assert await other.ping()
    finally:
        await client.aclose()
        await other.aclose()


def test_slow_delays_both_directions_of_a_round_trip(redis_proxy: FaultProxy) -> None:
    # A sync test with a sync client: the proxy's controls work the same way here.
    delay = 0.1
    client = redis.Redis.from_url(redis_proxy.url(redis_url()))
    try:
        assert client.ping()
        redis_proxy.slow(delay)
        started = time.monotonic()
        assert client.ping()
        # The request and the reply are each delayed (a lower bound only: never a speed).
        assert time.monotonic() - started >= 2 * delay - CLOCK_SLACK_S
        redis_proxy.slow(0)
        assert client.ping()
        with pytest.raises(ValueError):
            redis_proxy.slow(-1)
    finally:
        client.close()


async def test_dropped_redis_reply_ran_on_the_server(
    redis_proxy: FaultProxy, direct_redis: redis.asyncio.Redis, key: str
) -> None:
    client = proxied_redis(redis_proxy)
    try:
        assert await client.ping()  # connected: the next reply is the INCR's
        redis_proxy.drop_next_reply()
        with pytest.raises(redis.ConnectionError):
            await client.incr(key)
        assert await direct_redis.get(key) == b"1"
        assert redis_proxy.replies_dropped == 1
        # One reply only: the client reconnects and the next one arrives.
        assert await client.incr(key) == 2
        assert redis_proxy.replies_dropped == 1
    finally:
        await client.aclose()


# PostgreSQL


@pytest.fixture
def postgres_proxy() -> Iterator[FaultProxy]:
    require_backend("postgres")
    with FaultProxy.for_url(postgres_url()) as proxy:
        yield proxy


async def connect_through(proxy: FaultProxy) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(proxy.url(postgres_url()), autocommit=True)


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A schema of the test's own with a table ``t``, dropped at the end."""
    require_backend("postgres")
    name = f"test_faults_{token()}"
    async with await psycopg.AsyncConnection.connect(postgres_url(), autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{name}"')
        await conn.execute(f'CREATE TABLE "{name}".t (n int)')
        try:
            yield name
        finally:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')


async def test_postgres_queries_hang_while_paused_and_complete_after_resume(
    postgres_proxy: FaultProxy,
) -> None:
    async with await connect_through(postgres_proxy) as conn:
        postgres_proxy.pause()
        query = asyncio.create_task(conn.execute("SELECT 42"))
        # shield: a cancelled psycopg query would wait for the server to confirm it.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(query), HANG_S)

        postgres_proxy.resume()
        cursor = await asyncio.wait_for(query, 10)
        assert await cursor.fetchone() == (42,)


async def test_postgres_queries_fail_while_cut_and_succeed_after_heal(
    postgres_proxy: FaultProxy,
) -> None:
    async with await connect_through(postgres_proxy) as conn:
        assert postgres_proxy.connections == 1
        postgres_proxy.cut()
        assert postgres_proxy.connections == 0
        with pytest.raises(psycopg.OperationalError):
            await conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        await connect_through(postgres_proxy)

    postgres_proxy.heal()
    async with await connect_through(postgres_proxy) as conn:
        cursor = await conn.execute("SELECT 1")
        assert await cursor.fetchone() == (1,)


async def test_dropped_postgres_reply_ran_on_the_server(
    postgres_proxy: FaultProxy, schema: str
) -> None:
    async with await connect_through(postgres_proxy) as conn:
        postgres_proxy.drop_next_reply(containing=b"INSERT 0 1")
        # A reply without those bytes passes.
        cursor = await conn.execute("SELECT 1")
        assert await cursor.fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            await conn.execute(f'INSERT INTO "{schema}".t VALUES (7)')
    assert postgres_proxy.replies_dropped == 1
    async with await psycopg.AsyncConnection.connect(postgres_url()) as direct:
        cursor = await direct.execute(f'SELECT n FROM "{schema}".t')
        assert await cursor.fetchall() == [(7,)]


# The proxy's URLs


def test_url_swaps_only_host_and_port() -> None:
    with FaultProxy("127.0.0.1", 5432) as proxy:
        at = f"127.0.0.1:{proxy.port}"
        assert proxy.url("postgresql://user:secret@db.local:5432/test?schema=s1") == (
            f"postgresql://user:secret@{at}/test?schema=s1"
        )
        assert proxy.url("postgresql://postgres@127.0.0.1/test") == (
            f"postgresql://postgres@{at}/test"
        )
        with pytest.raises(ValueError, match="6379"):
            proxy.url("redis://127.0.0.1:6379/0")
    with FaultProxy.for_url("redis://:pw@127.0.0.1/3?prefix=p") as proxy:
        assert proxy.target_port == 6379
        assert proxy.url("redis://:pw@127.0.0.1/3?prefix=p") == (
            f"redis://:pw@127.0.0.1:{proxy.port}/3?prefix=p"
        )
    with pytest.raises(RuntimeError, match="not started"):
        proxy.url("redis://127.0.0.1/0")


# Worker processes


async def picked_up(queue: Queue, key: str) -> bool:
    job = await queue.job(key)
    return job is not None and job.status != Status.QUEUED


async def test_worker_process_runs_stalls_resumes_and_dies(tmp_path: Path) -> None:
    url = backend_url_for("sqlite", tmp_path)
    async with (
        Queue.from_url(url, name="faults") as queue,
        WorkerProcess(url, "faults", concurrency=1) as worker,
    ):
        first = await queue.enqueue("echo", value="one", key="first")
        assert first is not None
        await first.refresh(until_complete=20)
        assert (first.status, first.result) == (Status.COMPLETE, "one")

        # The job becomes due while the worker is stalled. It is stored before the stall:
        # a worker stalled inside one of its SQLite write transactions would keep the
        # database locked, and an enqueue then would fail after the busy timeout.
        second = await queue.enqueue(
            "echo", value="two", key="second", scheduled=time.time() + DUE_IN_S
        )
        assert second is not None
        worker.stall()
        assert worker.alive
        # A bounded wait on a condition that must stay false.
        with pytest.raises(TimeoutError):
            await wait_until(lambda: picked_up(queue, "second"), timeout=DUE_IN_S + HANG_S)
        worker.resume()
        await second.refresh(until_complete=20)
        assert (second.status, second.result) == (Status.COMPLETE, "two")

        worker.kill()
        assert not worker.alive
        assert worker.returncode == -9


async def test_worker_process_works_through_the_proxy_and_stops_gracefully(
    redis_proxy: FaultProxy, tmp_path: Path
) -> None:
    url = isolated_url("redis", tmp_path)
    async with Queue.from_url(url, name="faults") as queue:
        try:
            async with WorkerProcess(redis_proxy.url(url), "faults") as worker:
                assert redis_proxy.connections >= 1  # the worker's, from its own process
                job = await queue.enqueue("add", a=2, b=3)
                assert job is not None
                await job.refresh(until_complete=20)
                assert (job.status, job.result) == (Status.COMPLETE, 5)
                assert await worker.terminate() == 0
                assert not worker.alive
        finally:
            await queue.backend.drop()


async def test_worker_process_that_cannot_start_shows_its_output(tmp_path: Path) -> None:
    worker = WorkerProcess("nosuch://nowhere", "faults")
    with pytest.raises(RuntimeError, match="before it was ready") as caught:
        await worker.start()
    assert "UnsupportedURLError" in str(caught.value)
    assert not worker.alive


async def test_worker_process_shows_its_output_when_the_test_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = backend_url_for("sqlite", tmp_path)
    worker = WorkerProcess(url, "faults")
    with pytest.raises(LookupError):
        async with worker:
            raise LookupError("the test failed")
    assert not worker.alive
    printed = capsys.readouterr().err
    assert f"output of {worker!r}" in printed
    assert "ready" in printed.splitlines()
