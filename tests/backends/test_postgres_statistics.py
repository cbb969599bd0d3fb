"""Planner statistics on a new schema: the periodic maintenance analyzes what never was.

A worker's sweep runs ``expire``: once a table that was never analyzed holds enough rows, it
analyzes it, so that ``claim`` and ``finish`` look their jobs up by key instead of reading
the whole queue. One process analyzes at a time; a role that does not own the tables, or an ANALYZE
that fails, never fails the sweep. Every test owns one schema, and turns autovacuum off on
its tables so that only the backend can analyze them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from backends import test_postgres
from backends.test_postgres import Factory, _job, user_pool
from conveyor.backends.base import RunEnd, Transition
from conveyor.backends.postgres import PostgresBackend, batches

url = test_postgres.url
schema = test_postgres.schema
admin = test_postgres.admin
make = test_postgres.make

LOGGER = "conveyor.backends.postgres"


async def _fill(backend: PostgresBackend, admin: Any, schema: str, count: int) -> None:
    """Enqueue ``count`` jobs into tables that autovacuum leaves alone."""
    for table in ("jobs", "runs"):
        await admin.execute(f'ALTER TABLE "{schema}".{table} SET (autovacuum_enabled = false)')
    if count:
        assert all(await backend.enqueue(_job(f"k{i}") for i in range(count)))


async def _has_statistics(admin: Any, schema: str, table: str) -> bool:
    """Whether the planner has column statistics for the table."""
    cur = await admin.execute(
        "SELECT count(*) FROM pg_stats WHERE schemaname = %s AND tablename = %s", (schema, table)
    )
    row = await cur.fetchone()
    return bool(row and row[0])


def _scans_of(plan: dict[str, Any], table: str) -> Iterator[dict[str, Any]]:
    if plan.get("Relation Name") == table and "Scan" in plan["Node Type"]:
        yield plan
    for child in plan.get("Plans", []):
        yield from _scans_of(child, table)


async def _job_rows_read(admin: Any, query: str, params: dict[str, Any]) -> int:
    """How many job rows a statement reads (run by EXPLAIN ANALYZE, then rolled back)."""
    async with admin.transaction():
        cur = await admin.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params)
        row = await cur.fetchone()
        raise psycopg.Rollback()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return sum(
        (scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)) * scan["Actual Loops"]
        for scan in _scans_of(document[0]["Plan"], "jobs")
    )


async def test_expire_analyzes_the_tables_once_they_hold_rows(
    make: Factory, admin: Any, schema: str
) -> None:
    backend = await make()
    await _fill(backend, admin, schema, 0)
    await backend.expire(time.time(), 1000)
    assert not await _has_statistics(admin, schema, "jobs")  # empty: nothing to learn yet
    await _fill(backend, admin, schema, 2000)
    assert len(await backend.claim("w", 1000, 60, time.time())) == 1000  # 1,000 runs
    await backend.expire(time.time(), 1000)
    assert await _has_statistics(admin, schema, "jobs")
    assert await _has_statistics(admin, schema, "runs")
    cur = await admin.execute(
        "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (f'"{schema}".jobs',)
    )
    assert await cur.fetchone() == (2000,)


async def test_after_the_sweep_claim_and_finish_read_their_jobs_not_the_queue(
    make: Factory, admin: Any, schema: str
) -> None:
    backend = await make()
    await _fill(backend, admin, schema, 10_000)
    await backend.expire(time.time(), 1000)
    now = time.time()
    claim = {
        "queue": backend.queue_name,
        "worker_id": "w",
        "now": now,
        "now_ms": int(now * 1000),
        "lease_until": now + 60,
        "claim_id": 1,
        "present": False,
        "lowest": -(2**31),
        "highest": 2**31 - 1,
    }
    claim_100 = backend.sql.queries["claim"].replace("{{limit}}", "100")
    # The 100 jobs picked, then the 100 updated: not the 10,000 of the queue.
    assert await _job_rows_read(admin, claim_100, claim) <= 300
    rows = await backend.claim("w", 100, 60, time.time())
    renew = {
        "queue": backend.queue_name,
        "keys": [row.key for row in rows],
        "tokens": [int(row.token or 0) for row in rows],
        "lease_until": now + 60,
        "now_ms": int(now * 1000),
        "present": False,
    }
    assert await _job_rows_read(admin, backend.sql.queries["renew"], renew) <= 200
    transitions = [
        Transition(
            key=row.key,
            payload='{"k":2}',
            status="complete",
            run=RunEnd(run_id=row.run_id, status="complete", finished_ms=int(time.time() * 1000)),
            token=row.token,
        )
        for row in rows
    ]
    finish = {
        "queue": backend.queue_name,
        "channel": backend.channel,
        "now": now,
        **batches.finish_params(transitions),
    }
    assert await _job_rows_read(admin, backend.sql.queries["finish"], finish) <= 200
    await backend.finish(transitions)
    assert {row.status for row in await backend.get([t.key for t in transitions])} == {"complete"}


async def test_after_the_sweep_claims_reuse_a_cached_plan(
    url: str, make: Factory, admin: Any, schema: str
) -> None:
    # One connection (a user's pool of one), so that every claim runs where it was prepared.
    async with user_pool(url, autocommit=True, max_size=1) as pool:
        backend = await make(pool=pool)
        await _fill(backend, admin, schema, 2000)
        await backend.expire(time.time(), 1000)
        assert await _has_statistics(admin, schema, "jobs")
        for _ in range(20):
            assert len(await backend.claim("w", 10, 60, time.time())) == 10
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE %s",
                ("%Take the next claimable jobs%",),
            )
            [(generic, custom)] = await cur.fetchall()
    # Planned for the first calls only, then run from the plan cache (not planned each time).
    assert generic > custom


async def test_one_process_analyzes_at_a_time(make: Factory, admin: Any, schema: str) -> None:
    backend = await make()
    await _fill(backend, admin, schema, 2000)
    async with admin.transaction():
        [(locked, _)] = await (await admin.execute(backend.sql.queries["analyze_lock"])).fetchall()
        assert locked  # as if another process were analyzing: this one skips it
        assert await backend.expire(time.time(), 1000) == 0
        assert not await _has_statistics(admin, schema, "jobs")
    await backend.expire(time.time(), 1000)  # the lock is free: this time it analyzes
    assert await _has_statistics(admin, schema, "jobs")


@pytest.fixture
async def stranger(url: str, admin: Any, schema: str) -> AsyncIterator[str]:
    """A role that may use the test's tables but owns none of them; dropped at the end."""
    role = f"conveyor_stranger_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        yield role
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')  # its grants on the test's schema
        await admin.execute(f'DROP ROLE "{role}"')


async def test_a_role_that_does_not_own_the_tables_sweeps_without_analyzing(
    url: str, make: Factory, admin: Any, schema: str, stranger: str, caplog: Any
) -> None:
    owner = await make()
    await _fill(owner, admin, schema, 2000)
    await admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{stranger}"')
    await admin.execute(
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{stranger}"'
    )

    async def as_stranger(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(f'SET ROLE "{stranger}"')

    async with user_pool(url, autocommit=True, configure=as_stranger) as pool:
        backend = await make(pool=pool)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            assert await backend.expire(time.time(), 1000) == 0
            assert await backend.expire(time.time(), 1000) == 0
    assert not await _has_statistics(admin, schema, "jobs")
    refusals = [r for r in caplog.records if "may not analyze it" in r.getMessage()]
    assert len(refusals) == 1  # said once, not at every sweep
    assert "jobs" in refusals[0].getMessage()


async def test_a_failing_analyze_does_not_fail_the_sweep(
    make: Factory, admin: Any, schema: str, caplog: Any
) -> None:
    backend = await make()
    await _fill(backend, admin, schema, 2000)
    async with admin.transaction():
        # A lock that ANALYZE waits for (as a VACUUM's or an index build's would be).
        await admin.execute(f'LOCK TABLE "{schema}".jobs IN SHARE UPDATE EXCLUSIVE MODE')
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert await backend.expire(time.time(), 1000) == 0
    assert not await _has_statistics(admin, schema, "jobs")
    assert any("cannot analyze jobs" in r.getMessage() for r in caplog.records)
