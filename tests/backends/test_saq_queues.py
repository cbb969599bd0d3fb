"""SAQ's ``RedisQueue`` and ``PostgresQueue``: built on the user's own client or pool, who
closes it, the PostgreSQL priority window, the schema chosen by ``search_path`` and SAQ's
options that Conveyor cannot honour."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import ConnectionPool, Redis

from conveyor import Queue
from conveyor.backends.postgres.config import settings_from, split_url
from conveyor.errors import ConfigurationError
from conveyor.queue.postgres import PostgresQueue
from conveyor.queue.redis import RedisQueue
from conveyor.testing.backends import postgres_url, redis_url
from conveyor.testing.fixtures import require_backend, running_worker


async def double(ctx: dict[str, Any], *, x: int) -> int:
    return 2 * x


# Redis


class CountingPool(ConnectionPool):
    """A redis-py pool that remembers the most connections in use at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_use = 0
        self.most_in_use = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super().get_connection(*args, **kwargs)
        self.in_use += 1
        self.most_in_use = max(self.most_in_use, self.in_use)
        return connection

    async def release(self, connection: Any) -> None:
        self.in_use -= 1
        await super().release(connection)


def _prefix() -> str:
    return f"test-saq-{uuid.uuid4().hex[:10]}"


async def test_redis_queue_on_the_users_client_runs_a_job_and_the_client_stays_usable() -> None:
    require_backend("redis")
    client = Redis.from_url(redis_url())
    queue = RedisQueue(client, name="saq", prefix=_prefix())
    try:
        assert isinstance(queue, Queue) and queue.redis is client
        async with running_worker(queue, [double]):
            assert await queue.apply("double", x=21) == 42
    finally:
        await queue.backend.drop()
        await queue.disconnect()
    # Closed as SAQ's disconnect closes it; redis-py reconnects on the next command.
    assert await client.ping()
    await client.aclose()


async def test_redis_queue_from_url_is_a_redis_queue_with_its_own_client() -> None:
    require_backend("redis")
    queue = Queue.from_url(f"{redis_url()}?prefix={_prefix()}", name="saq")
    assert isinstance(queue, RedisQueue)
    lines = queue.backend._scripts.lines  # type: ignore[attr-defined]
    assert lines._max_borrowed is None  # Queue.from_url: the pool's own bound
    saqs = RedisQueue.from_url(f"{redis_url()}?prefix={_prefix()}")
    assert saqs.backend._scripts.lines._max_borrowed == 20  # type: ignore[attr-defined]
    try:
        await queue.connect()
        assert await queue.redis.ping()
        assert await queue.enqueue("double", x=1) is not None
        assert await queue.count("queued") == 1
    finally:
        await queue.backend.drop()
        await queue.disconnect()


@pytest.mark.parametrize("bound", [2, None])
async def test_max_concurrent_ops_bounds_the_connections_taken_from_the_pool(
    bound: int | None,
) -> None:
    require_backend("redis")
    pool = CountingPool.from_url(redis_url())
    assert isinstance(pool, CountingPool)
    client = Redis(connection_pool=pool)
    if bound is None:  # the check can fail: without a bound, many connections are taken
        queue: Queue = Queue.from_url(redis_url(), name="saq", redis=client, prefix=_prefix())
    else:
        queue = RedisQueue(client, name="saq", max_concurrent_ops=bound, prefix=_prefix())
    try:
        await queue.connect()
        jobs = await asyncio.gather(*(queue.enqueue("double", x=i) for i in range(50)))
        assert all(job is not None for job in jobs)
        assert await queue.count("queued") == 50
        if bound is None:
            assert pool.most_in_use > 2
        else:
            assert pool.most_in_use <= bound
    finally:
        await queue.backend.drop()
        await queue.disconnect()
        await client.aclose()
        await pool.disconnect()


def test_a_max_concurrent_ops_below_one_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="max_concurrent_ops"):
        RedisQueue(Redis.from_url(redis_url()), max_concurrent_ops=0)


# PostgreSQL


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A schema of the test's own, dropped at the end."""
    require_backend("postgres")
    name = f"test_saq_{uuid.uuid4().hex[:10]}"
    yield name
    async with await psycopg.AsyncConnection.connect(postgres_url(), autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextlib.asynccontextmanager
async def users_pool(open_it: bool = True) -> AsyncIterator[AsyncConnectionPool[Any]]:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        postgres_url(), min_size=1, max_size=4, open=False
    )
    if open_it:
        await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


async def _one(pool: AsyncConnectionPool[Any]) -> Any:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT 1")).fetchone()
        return row[0] if row else None


async def test_postgres_queue_on_the_users_pool_runs_a_job_and_leaves_the_pool_open(
    schema: str,
) -> None:
    async with users_pool() as pool:
        queue = PostgresQueue(pool=pool, name="saq", schema=schema)
        assert isinstance(queue, Queue) and queue.pool is pool
        async with running_worker(queue, [double]):
            assert await queue.apply("double", x=21) == 42
        await queue.disconnect()
        assert not pool.closed and await _one(pool) == 1


async def test_manage_pool_lifecycle_opens_resizes_and_closes_the_users_pool(
    schema: str,
) -> None:
    async with users_pool(open_it=False) as pool:
        queue = PostgresQueue(
            pool=pool, schema=schema, min_size=2, max_size=3, manage_pool_lifecycle=True
        )
        await queue.connect()
        assert not pool.closed and (pool.min_size, pool.max_size) == (2, 3)
        assert await queue.enqueue("double", x=1) is not None
        await queue.disconnect()
        assert pool.closed


async def test_a_users_pool_that_is_not_open_is_refused_saying_what_to_do(schema: str) -> None:
    async with users_pool(open_it=False) as pool:
        queue = PostgresQueue(pool=pool, schema=schema)
        with pytest.raises(ConfigurationError, match=r"await pool\.open\(\)") as caught:
            await queue.connect()
        assert "manage_pool_lifecycle=True" in str(caught.value)
        assert pool.closed


async def test_postgres_queue_from_a_url_opens_and_closes_its_own_pool(schema: str) -> None:
    queue = PostgresQueue(url=postgres_url(), schema=schema, min_size=1, max_size=2)
    assert queue.pool is None
    await queue.connect()
    pool = queue.pool
    assert pool is not None and not pool.closed and pool.max_size == 2
    await queue.disconnect()
    assert pool.closed


async def _claimed(queue: Queue) -> list[str]:
    await queue.connect()
    rows = await queue.backend.claim("w", 100, 60, time.time())
    return sorted(row.key for row in rows)


async def test_a_priority_outside_the_window_is_not_dequeued(schema: str) -> None:
    url = f"{postgres_url()}?schema={schema}"
    low = PostgresQueue(url=url, name="saq", priorities=(0, 10))
    high = PostgresQueue.from_url(url, name="saq", priorities=(11, 100))
    saq_default = PostgresQueue(url=url, name="saq")
    every = Queue.from_url(url, name="saq")
    try:
        for key, priority in (("p5", 5), ("p50", 50), ("p40000", 40000), ("minus", -1)):
            assert await low.enqueue("double", key=key, priority=priority, x=1) is not None
        assert await _claimed(low) == ["p5"]
        assert await _claimed(saq_default) == ["p50"]  # SAQ's window: 0..32767
        assert await _claimed(high) == []
        assert await _claimed(every) == ["minus", "p40000"]  # Queue.from_url: no window
    finally:
        for queue in (low, high, saq_default, every):
            await queue.disconnect()


@pytest.mark.parametrize(
    "options",
    [
        "options=-c%20search_path%3D{schema}",
        "options=-c+search_path%3D{schema},public",
        "options=--search_path%3D{schema}",
        "options=-csearch_path={schema}",
        "options=-c%20search_path%3D%22%24user%22,{schema}",
    ],
)
def test_search_path_in_the_urls_options_chooses_the_schema(options: str) -> None:
    url = f"postgresql://u@h/db?{options.format(schema='myapp')}"
    assert settings_from(url).schema == "myapp"
    conninfo, _ = split_url(url)
    assert "options=" in conninfo  # still sent to the server
    # ?schema= and the keyword win over it.
    assert settings_from(f"{url}&schema=other").schema == "other"
    assert settings_from(url, schema="third").schema == "third"
    assert settings_from("postgresql://u@h/db?options=-c%20statement_timeout%3D5").schema == (
        "conveyor"
    )


def test_a_search_path_name_is_folded_as_postgresql_folds_it() -> None:
    folded = settings_from("postgresql://u@h/db?options=-c%20search_path%3DMyApp").schema
    quoted = settings_from("postgresql://u@h/db?options=-c%20search_path%3D%22MyApp%22").schema
    assert (folded, quoted) == ("myapp", "MyApp")


async def test_a_queue_on_a_search_path_url_keeps_its_tables_in_that_schema(schema: str) -> None:
    queue = Queue.from_url(f"{postgres_url()}?options=-c%20search_path%3D{schema}", name="saq")
    assert isinstance(queue, PostgresQueue)
    try:
        assert await queue.enqueue("double", key="k", x=1) is not None
    finally:
        await queue.disconnect()
    async with await psycopg.AsyncConnection.connect(postgres_url()) as conn:
        cursor = await conn.execute(f'SELECT key FROM "{schema}".jobs')
        assert await cursor.fetchall() == [("k",)]


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("jobs_table", "my_jobs", "schema"),
        ("stats_table", "my_stats", "schema"),
        ("versions_table", "my_versions", "schema"),
        ("saq_lock_keyspace", 7, "advisory locks"),
    ],
)
def test_saq_options_conveyor_cannot_honour_raise_saying_so(
    option: str, value: Any, says: str
) -> None:
    url = "postgresql://u@h/db"
    for build in (
        lambda: PostgresQueue(url=url, **{option: value}),
        lambda: Queue.from_url(url, **{option: value}),
    ):
        with pytest.raises(ConfigurationError, match=option) as caught:
            build()
        assert "cannot be honoured" in str(caught.value) and says in str(caught.value)
    # SAQ's defaults mean nothing here and are accepted.
    defaults = {"jobs_table": "saq_jobs", "stats_table": "saq_stats"}
    assert isinstance(Queue.from_url(url, saq_lock_keyspace=0, **defaults), PostgresQueue)


def test_postgres_queue_needs_a_pool_or_a_url_not_both(tmp_path: Path) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool("postgresql://u@h/db", open=False)
    with pytest.raises(ConfigurationError, match="neither"):
        PostgresQueue()
    with pytest.raises(ConfigurationError, match="both"):
        PostgresQueue(pool=pool, url="postgresql://u@h/db")
    with pytest.raises(ConfigurationError, match="manage_pool_lifecycle=False"):
        PostgresQueue(url="postgresql://u@h/db", manage_pool_lifecycle=False)
    with pytest.raises(ConfigurationError, match="priorities"):
        PostgresQueue(url="postgresql://u@h/db", priorities=(10, 1))


def test_the_search_path_of_the_users_pool_chooses_the_schema() -> None:
    for conninfo in (
        "postgresql://u@h/db?options=-c%20search_path%3Dmyapp",
        "host=h dbname=db options='-c search_path=myapp,public'",
    ):
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(conninfo, open=False)
        queue = PostgresQueue(pool=pool)
        assert queue.backend.settings.schema == "myapp"  # type: ignore[attr-defined]
        assert PostgresQueue(pool=pool, schema="other").backend.settings.schema == "other"  # type: ignore[attr-defined]
