"""What the PostgreSQL backend promises beyond the conformance suite.

Its schema (the migrations build exactly ``schema.sql``; concurrent connects migrate once;
the DBA's script works), its URLs, transactional enqueue, claims that never collide across
backends, the group rule under concurrency, payload types, bounded expiry, wake-ups by
NOTIFY and by polling, and surviving killed connections. Every test owns one schema and
drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from conveyor.backends import backend_from_url
from conveyor.backends.base import Lease, NewJob, Renewal, RunEnd, RunFilter, Transition
from conveyor.backends.postgres import PostgresBackend, migration_sql
from conveyor.backends.postgres.config import split_url
from conveyor.backends.postgres.migrate import migrate
from conveyor.backends.postgres.sqlfiles import load
from conveyor.errors import BackendError, ConfigurationError
from conveyor.testing import wait_until
from conveyor.testing.backends import postgres_url
from conveyor.testing.fixtures import backend_url_for

# Generous: a wait that is not woken up runs into it, and the test says so.
LONG_WAIT = 60.0
WOKEN_WITHIN = 20.0

Factory = Callable[..., Awaitable[PostgresBackend]]


@pytest.fixture
def url(tmp_path: Any) -> str:
    return backend_url_for("postgres", tmp_path)


@pytest.fixture
def schema(url: str) -> str:
    match = re.search(r"schema=(\w+)", url)
    assert match is not None
    return match.group(1)


@pytest.fixture
async def admin(url: str, schema: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection outside the backend; drops the test's schema at the end."""
    conn = await psycopg.AsyncConnection.connect(postgres_url(), autocommit=True)
    yield conn
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


@pytest.fixture
async def make(url: str, admin: Any) -> AsyncIterator[Factory]:
    """Connected backends on the test's schema, disconnected at the end."""
    made: list[PostgresBackend] = []

    async def factory(queue: str = "main", **kwargs: Any) -> PostgresBackend:
        backend = PostgresBackend.from_url(url, queue, **kwargs)
        await backend.connect()
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        await backend.disconnect()


def _job(key: str, payload: bytes | str = '{"k":1}', **kwargs: Any) -> NewJob:
    return NewJob(key=key, function="task", payload=payload, **kwargs)


def _done(key: str, run_id: str | None, status: str = "complete") -> Transition:
    run = RunEnd(run_id, status, int(time.time() * 1000)) if run_id else None
    return Transition(key=key, payload='{"done":true}', status=status, run=run)


# Schema and migrations


async def _shape(conn: psycopg.AsyncConnection[Any], schema: str) -> dict[str, list[Any]]:
    queries = {
        "columns": "SELECT table_name, column_name, ordinal_position, data_type, is_nullable,"
        " column_default FROM information_schema.columns WHERE table_schema = %(s)s"
        " AND table_name <> 'schema_version' ORDER BY 1, 3",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = %(s)s AND tablename <> 'schema_version' ORDER BY 2",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE connamespace = %(s)s::regnamespace"
        " AND conrelid::regclass::text NOT LIKE '%%schema_version' ORDER BY 2",
    }
    shape: dict[str, list[Any]] = {}
    for name, query in queries.items():
        cur = await conn.execute(query, {"s": schema})
        rows = await cur.fetchall()
        shape[name] = [
            tuple(str(v).replace(f'"{schema}"', "<s>").replace(schema, "<s>") for v in row)
            for row in rows
        ]
    return shape


async def test_migrations_build_exactly_schema_sql(admin: Any, schema: str) -> None:
    by_file, by_migrations = f"{schema}_file", f"{schema}_migr"
    try:
        await admin.execute(f'CREATE SCHEMA "{by_file}"')
        await admin.execute(load(by_file).schema_sql)
        applied = await migrate(admin, load(by_migrations))
        assert applied == [m.name for m in load(by_migrations).migrations]
        from_file = await _shape(admin, by_file)
        from_migrations = await _shape(admin, by_migrations)
        assert from_file["columns"] and from_file["indexes"]
        assert from_file == from_migrations
        assert await migrate(admin, load(by_migrations)) == []  # already current
    finally:
        for name in (by_file, by_migrations):
            await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def test_concurrent_connects_migrate_once(url: str, admin: Any, schema: str) -> None:
    backends = [PostgresBackend.from_url(url, f"q{i}") for i in range(4)]
    await asyncio.gather(*(b.connect() for b in backends))
    try:
        cur = await admin.execute(f'SELECT version FROM "{schema}".schema_version')
        versions = [row[0] for row in await cur.fetchall()]
        assert versions == [m.version for m in load(schema).migrations]
        assert await backends[0].enqueue([_job("a")]) == [True]
    finally:
        await asyncio.gather(*(b.disconnect() for b in backends))


async def test_dba_script_creates_what_the_backend_uses(
    admin: Any, schema: str, make: Factory
) -> None:
    await admin.execute(migration_sql(schema))
    cur = await admin.execute(f'SELECT count(*) FROM "{schema}".schema_version')
    assert (await cur.fetchone())[0] == len(load(schema).migrations)
    backend = await make()
    assert await backend.enqueue([_job("a")]) == [True]
    assert "BEGIN;" in migration_sql(schema, from_version=1)
    assert "0001_initial" not in migration_sql(schema, from_version=1)


async def test_drop_removes_only_its_own_schema(url: str, admin: Any, make: Factory) -> None:
    other = url.replace("schema=", "schema=other_")
    neighbour = PostgresBackend.from_url(other, "main")
    await neighbour.connect()
    try:
        await neighbour.enqueue([_job("stays")])
        backend = await make()
        await backend.drop()
        assert [row.key for row in await neighbour.get(["stays"]) if row] == ["stays"]
    finally:
        await neighbour.drop()
        await neighbour.disconnect()


# URLs


def test_url_options_are_stripped_and_driver_suffixes_accepted() -> None:
    conninfo, options = split_url(
        "postgresql+asyncpg://u:p@db:6432/app?sslmode=disable&schema=jobs"
        "&poll_interval=0.5&prepare_threshold=none&options=-c%20lock_timeout%3D5s"
    )
    assert conninfo == (
        "postgresql://u:p@db:6432/app?sslmode=disable&options=-c%20lock_timeout%3D5s"
    )
    assert options == {"schema": "jobs", "poll_interval": "0.5", "prepare_threshold": "none"}
    backend = backend_from_url("postgres://h/db?schema=jobs&prepare_threshold=none", "q")
    assert isinstance(backend, PostgresBackend)
    assert backend.settings.schema == "jobs" and backend.settings.prepare_threshold is None
    assert backend.describe()["address"] == "h:5432/db"
    assert "p@" not in str(PostgresBackend.from_url("postgresql://u:p@h/db", "q").describe())


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?schema=drop table",
        "postgresql://h/db?poll_interval=-1",
        "postgresql://h/db?prepare_threshold=soon",
        "mysql://h/db",
    ],
)
def test_bad_url_options_fail_with_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresBackend.from_url(url, "q")


@contextlib.asynccontextmanager
async def user_pool(
    url: str, *, autocommit: bool, max_size: int = 2, configure: Any = None
) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """A pool of the user's own, to the database of ``url``, closed at the end."""
    conninfo, _ = split_url(url)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo,
        kwargs={"autocommit": autocommit},
        configure=configure,
        min_size=1,
        max_size=max_size,
        open=False,
    )
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


async def test_user_pool_is_used_and_left_open(url: str, make: Factory) -> None:
    _, options = split_url(url)
    async with user_pool(url, autocommit=False) as pool:
        backend = await make(pool=pool)
        assert backend._database().held is None  # no connection of its own beside the pool
        assert await backend.enqueue([_job("via-pool")]) == [True]
        [row] = await backend.claim("w", 1, 30, time.time())
        assert row.key == "via-pool"
        await backend.disconnect()
        async with pool.connection() as conn:
            cur = await conn.execute(f'SELECT status FROM "{options["schema"]}".jobs')
            assert await cur.fetchall() == [("active",)]  # committed despite autocommit off


# Enqueue


async def test_transactional_enqueue_follows_the_callers_transaction(
    url: str, make: Factory
) -> None:
    backend = await make()
    conninfo, _ = split_url(url)
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        assert await backend.enqueue([_job("rolled-back")], connection=conn) == [True]
        await conn.rollback()
        assert await backend.enqueue([_job("committed")], connection=conn) == [True]
        assert await backend.get(["committed"]) == [None]  # not visible before commit
        await conn.commit()
    assert await backend.get(["rolled-back"]) == [None]
    [row] = await backend.get(["committed"])
    assert row is not None and row.status == "queued"
    assert backend.capabilities.transactional_enqueue


async def test_enqueue_batch_dedups_keys_and_once_marks(make: Factory) -> None:
    backend = await make()
    result = await backend.enqueue(
        [
            _job("a"),
            _job("a"),
            _job("cron-1", once="slot-1", once_ttl=60),
            _job("cron-2", once="slot-1", once_ttl=60),
        ]
    )
    assert result == [True, False, True, False]
    assert await backend.enqueue([_job("cron-3", once="slot-1", once_ttl=60)]) == [False]
    due = time.time() + 3600
    assert await backend.enqueue([_job("cron-4", once="slot-4", once_ttl=60, due=due)]) == [True]
    assert await backend._next_due() == due  # a scheduled job, wherever it came from
    [row] = await backend.claim("w", 1, 30, time.time())
    await backend.finish([_done(row.key, row.run_id)])
    assert await backend.enqueue([_job(row.key, '{"again":1}')]) == [True]  # finished: replaced


async def test_payloads_keep_their_type_and_json_is_queryable(
    make: Factory, admin: Any, schema: str
) -> None:
    backend = await make()
    payloads: dict[str, bytes | str] = {
        "json-str": '{"b":[1,2],"a":"x"}',
        "json-bytes": b'{"a":1}',
        "pickle-like": b"\x80\x04\x95\x00binary\xff",
        "text": "not json at all",
        "nan": '{"x":NaN}',
        "nul-escape": '{"x":"\\u0000"}',
    }
    await backend.enqueue([_job(key, payload) for key, payload in payloads.items()])
    rows = {row.key: row for row in await backend.get(list(payloads)) if row}
    for key, payload in payloads.items():
        got = rows[key].payload
        assert type(got) is type(payload), key
        if key.startswith("json"):
            assert json.loads(got) == json.loads(payload)
        else:
            assert got == payload, key
    cur = await admin.execute(
        f"""SELECT payload->>'a' FROM "{schema}".jobs WHERE key = 'json-str'"""
    )
    assert await cur.fetchall() == [("x",)]
    assert await backend.update("pickle-like", b"\x00\x01") is True
    [row] = await backend.get(["pickle-like"])
    assert row is not None and row.payload == b"\x00\x01"


# Claims


async def test_concurrent_claims_from_several_backends_never_duplicate(make: Factory) -> None:
    backends = [await make() for _ in range(4)]
    await backends[0].enqueue([_job(f"j{i:03}") for i in range(300)])
    claimed: list[str] = []

    async def drain(backend: PostgresBackend, worker: str) -> None:
        while rows := await backend.claim(worker, 7, 30, time.time()):
            claimed.extend(row.key for row in rows)
            await backend.finish([_done(row.key, row.run_id) for row in rows])

    await asyncio.gather(*(drain(b, f"w{i}") for i, b in enumerate(backends)))
    assert len(claimed) == 300 and len(set(claimed)) == 300
    _, total = await backends[0].list_runs(RunFilter(status="complete"), 0, 1)
    assert total == 300


async def test_claim_order_group_heads_and_free_jobs(make: Factory) -> None:
    backend = await make()
    await backend.enqueue(
        [
            _job("a-later", group_key="a", due=time.time() + 3600),
            _job("a-low", group_key="a", priority=5),
            _job("a-high", group_key="a", priority=1),
            _job("b-1", group_key="b", priority=9),
            _job("free", priority=3),
        ]
    )
    now = time.time()
    rows = await backend.claim("w", 10, 30, now)
    assert [r.key for r in rows] == ["a-high", "free", "b-1"]
    assert await backend.claim("w", 10, 30, now) == []  # each group busy, the rest not due
    await backend.finish([_done("a-high", rows[0].run_id)])
    assert [r.key for r in await backend.claim("w", 10, 30, now)] == ["a-low"]


async def test_group_rule_holds_under_concurrency(make: Factory) -> None:
    backends = [await make() for _ in range(4)]
    groups = ["g0", "g1", "g2"]
    jobs = [_job(f"{g}-{i}", group_key=g) for g in groups for i in range(15)]
    jobs += [_job(f"free-{i}") for i in range(30)]
    random.shuffle(jobs)
    await backends[0].enqueue(jobs)
    holders: dict[str, str] = {}
    done: list[str] = []

    async def work(backend: PostgresBackend, worker: str) -> None:
        idle = 0
        while len(done) < len(jobs) and idle < 2000:
            rows = await backend.claim(worker, 3, 30, time.time())
            idle = 0 if rows else idle + 1
            for row in rows:
                group = row.key.split("-")[0]
                if group in groups:
                    assert group not in holders, f"{row.key} claimed while {holders[group]} ran"
                    holders[group] = row.key
            await asyncio.sleep(0)
            for row in rows:
                holders.pop(row.key.split("-")[0], None)  # released before finish commits
                done.append(row.key)
            await backend.finish([_done(row.key, row.run_id) for row in rows])

    await asyncio.gather(*(work(b, f"w{i}") for i, b in enumerate(backends)))
    assert sorted(done) == sorted(job.key for job in jobs)


async def test_renew_recover_and_abort(make: Factory) -> None:
    backend = await make()
    await backend.enqueue([_job("long"), _job("stuck"), _job("queued")])
    now = time.time()
    rows = {r.key: r for r in await backend.claim("w1", 2, 0.01, now)}
    assert set(rows) == {"long", "stuck"}
    long = Lease("long", rows["long"].token or "")
    assert await backend.renew("w1", [long, Lease("gone", "1")], 30, now) == Renewal(lost=["gone"])
    [recovered] = await backend.recover("w2", 10, 30, now + 1)
    assert recovered.key == "stuck" and recovered.worker_id == "w2" and recovered.attempts == 1
    assert await backend.abort("long", '{"error":"stop"}', now) == "active"
    assert await backend.renew("w1", [long], 30, now) == Renewal(aborting=["long"])
    assert await backend.abort("queued", '{"error":"no"}', now) == "queued"
    assert await backend.abort("missing", "{}", now) is None
    assert await backend.claim("w1", 5, 30, now) == []


# Expiry, runs and logs


async def test_expire_deletes_in_bounded_batches(make: Factory) -> None:
    backend = await make()
    await backend.enqueue([_job(f"e{i}") for i in range(25)])
    rows = await backend.claim("w", 25, 30, time.time())
    past = time.time() - 1
    await backend.finish(
        [
            Transition(
                r.key, "{}", "complete", expire_at=past, run=RunEnd(r.run_id or "", "complete", 1)
            )
            for r in rows
        ]
    )
    assert [await backend.expire(time.time(), 10) for _ in range(4)] == [10, 10, 5, 0]
    assert await backend.count(["complete"]) == {"complete": 0}


# Wake-ups


async def test_wait_for_work_returns_by_the_earliest_due_time(make: Factory) -> None:
    backend = await make()
    due = time.time() + 0.3
    await backend.enqueue([_job("soon", due=due)])
    assert await backend._next_due() == due
    assert await backend.claim("w", 1, 30, time.time()) == []
    await asyncio.wait_for(backend.wait_for_work(LONG_WAIT), WOKEN_WITHIN)
    await wait_until(lambda: backend.claim("w", 1, 30, time.time()), message="due job claimed")


async def _listen_connections(admin: Any, schema: str) -> int:
    cur = await admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        " AND query ILIKE 'LISTEN%%'",
        (f"conveyor-{schema}",),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def test_listen_starts_with_the_first_wait_only(
    make: Factory, admin: Any, schema: str
) -> None:
    producer = await make()
    await producer.enqueue([_job("a")])
    assert await _listen_connections(admin, schema) == 0  # a producer never listens
    worker = await make()
    await worker.wait_for_work(0)
    await wait_until(lambda: worker.listening, message="listening")
    assert await _listen_connections(admin, schema) == 1


async def test_poll_interval_mode_never_listens(make: Factory, admin: Any, schema: str) -> None:
    backend = await make(poll_interval=0.1)
    producer = await make()
    waiter = asyncio.ensure_future(backend.wait_for_work(LONG_WAIT))
    await producer.enqueue([_job("polled")])
    await asyncio.wait_for(waiter, WOKEN_WITHIN)
    await asyncio.wait_for(backend.wait_for_finish(["polled"], LONG_WAIT), WOKEN_WITHIN)
    [row] = await backend.claim("w", 1, 30, time.time())
    assert row.key == "polled"
    assert not backend.listening
    assert await _listen_connections(admin, schema) == 0


async def _terminate(admin: Any, schema: str) -> list[int]:
    cur = await admin.execute(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = %s AND pid <> pg_backend_pid()",
        (f"conveyor-{schema}",),
    )
    pids = [row[0] for row in await cur.fetchall()]

    async def gone() -> bool:
        check = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        )
        row = await check.fetchone()
        return bool(row and row[0] == 0)

    await wait_until(gone, message="terminated backends gone")
    return pids


async def test_killed_connections_are_replaced_and_notify_still_wakes(
    make: Factory, admin: Any, schema: str
) -> None:
    backend = await make()
    producer = await make("main")
    await backend.wait_for_work(0)
    await wait_until(lambda: backend.listening, message="listening")
    await backend.enqueue([_job("before")])
    assert len(await _terminate(admin, schema)) >= 3  # two pools and a LISTEN connection
    # Every pooled connection died; the next operations work all the same.
    assert await backend.enqueue([_job("after")]) == [True]
    rows = await backend.claim("w", 5, 30, time.time())
    assert sorted(r.key for r in rows) == ["after", "before"]
    await backend.finish([_done(r.key, r.run_id) for r in rows])
    assert await backend.count(["complete"]) == {"complete": 2}
    # The listener reconnects by itself, and a NOTIFY wakes an idle wait again.
    await wait_until(lambda: backend.listening, message="listening again")
    assert await backend.claim("w", 1, 30, time.time()) == []
    waiter = asyncio.ensure_future(backend.wait_for_work(LONG_WAIT))
    await asyncio.sleep(0)
    assert not waiter.done()
    await producer.enqueue([_job("wakes")])
    await asyncio.wait_for(waiter, WOKEN_WITHIN)


async def test_server_unreachable_raises_backend_error() -> None:
    backend = PostgresBackend.from_url(
        "postgresql://postgres@127.0.0.1:1/test?schema=nowhere", "q", pool_timeout=1
    )
    with pytest.raises(BackendError):
        await backend.connect()
    with pytest.raises(BackendError, match="not connected"):
        await backend.get(["x"])


async def test_finish_and_update_wake_finish_waiters(make: Factory) -> None:
    backend = await make()
    other = await make()
    await backend.enqueue([_job("watched")])
    [row] = await backend.claim("w", 1, 30, time.time())
    await backend.wait_for_finish(["watched"], 0)
    await wait_until(lambda: backend.listening, message="listening")
    for change in (
        other.update("watched", '{"progress":0.5}'),
        other.finish([_done("watched", row.run_id)]),
    ):
        waiter = asyncio.ensure_future(backend.wait_for_finish(["watched"], LONG_WAIT))
        await asyncio.sleep(0)
        await change
        await asyncio.wait_for(waiter, WOKEN_WITHIN)
    [stored] = await backend.get(["watched"])
    assert stored is not None and stored.status == "complete"
