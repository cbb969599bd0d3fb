"""PostgreSQL through PgBouncer in transaction mode (a PgBouncer the tests start).

The conformance suite runs through it too (the ``pgbouncer`` kind: LISTEN and presence on a
direct connection). These tests add what is particular to it, in both ways of waking
workers (``direct_url`` and ``poll_interval``): the options, a worker process that runs
jobs, wake-ups, a worker process killed and its job recovered, transactional enqueue on a
connection through PgBouncer, the admin service, a large pipelined enqueue, a restart of
PgBouncer under a running worker, and a ``direct_url`` that reaches another database.
Every test owns one schema and drops it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import runpy
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import Job, Queue, Status
from conveyor.admin import Admin
from conveyor.backends.base import NewJob
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.config import settings_from
from conveyor.errors import ConfigurationError
from conveyor.testing import wait_until
from conveyor.testing.backends import postgres_url
from conveyor.testing.faults import WorkerProcess
from conveyor.testing.fixtures import running_worker
from conveyor.testing.pgbouncer import PgBouncer
from conveyor.testing.tasks import TEST_FUNCTIONS
from test_transactional_enqueue import check_rollback_and_commit

LONG_WAIT = 60.0
WOKEN_WITHIN = 20.0


# Options (no server)


def test_transaction_mode_turns_prepared_statements_off_unless_told() -> None:
    direct = "postgresql%3A%2F%2Fapp%40db%3A5432%2Fshop%3Fsslmode%3Drequire"
    settings = settings_from(
        f"postgresql://app@pgb:6432/shop?pgbouncer=transaction&direct_url={direct}"
    )
    assert settings.pgbouncer == "transaction" and settings.prepare_threshold is None
    assert settings.conninfo == "postgresql://app@pgb:6432/shop"
    assert settings.direct_url == "postgresql://app@db:5432/shop?sslmode=require"
    # PgBouncer 1.21+ with max_prepared_statements can keep them: an explicit value wins.
    kept = settings_from(
        "postgresql://pgb/shop?pgbouncer=transaction&poll_interval=1&prepare_threshold=5"
    )
    assert kept.prepare_threshold == 5 and kept.poll_interval == 1.0
    # Session mode changes nothing; nor does a direct_url alone (any pooler).
    assert settings_from("postgresql://pgb/shop?pgbouncer=session").prepare_threshold == 5
    unencoded = settings_from("postgresql://pgb/shop?direct_url=postgresql://db/shop")
    assert unencoded.direct_url == "postgresql://db/shop" and unencoded.pgbouncer is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("pgbouncer=transaction", "add direct_url=.* or poll_interval="),
        ("pgbouncer=statement", "pgbouncer must be PgBouncer's pool_mode"),
        ("direct_url=postgresql://db/shop&poll_interval=1", "not both"),
        ("direct_url=postgresql%3A%2F%2Fdb%2Fshop%3Fschema%3Dx", r"move \['schema'\]"),
        ("direct_url=redis://db", "not a PostgreSQL URL"),
    ],
)
def test_options_that_cannot_work_are_refused(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PostgresBackend.from_url(f"postgresql://pgb/shop?{query}", "q")


# Through a PgBouncer


@pytest.fixture(params=["direct", "poll"])
def wake(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def url(pgbouncer: PgBouncer, wake: str) -> AsyncIterator[str]:
    """A queue URL through PgBouncer on a schema of the test's; dropped at the end."""
    url = pgbouncer.queue_url(wake)
    yield url
    schema = _schema(url)
    async with await psycopg.AsyncConnection.connect(postgres_url(), autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def queue(url: str) -> AsyncIterator[Queue]:
    queue = Queue.from_url(url, name="main")
    await queue.connect()
    yield queue
    await queue.disconnect()


def _schema(url: str) -> str:
    match = re.search(r"schema=(\w+)", url)
    assert match is not None
    return match.group(1)


async def _show(bouncer: PgBouncer, what: str) -> list[dict[str, Any]]:
    """A ``SHOW`` of PgBouncer's admin console, as dicts (it speaks the simple protocol)."""
    async with await psycopg.AsyncConnection.connect(bouncer.admin_url(), autocommit=True) as conn:
        cur = conn.cursor()
        await cur.execute(f"SHOW {what}", prepare=False)
        names = [column.name for column in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


async def test_the_fixture_pools_by_transaction(pgbouncer: PgBouncer) -> None:
    config = {row["key"]: row["value"] for row in await _show(pgbouncer, "CONFIG")}
    assert config["pool_mode"] == "transaction"


@pytest.mark.slow
async def test_a_worker_process_runs_jobs_through_pgbouncer(
    pgbouncer: PgBouncer, url: str, queue: Queue
) -> None:
    async with WorkerProcess(url, "main", concurrency=4):
        jobs = [await queue.enqueue("add", a=i, b=1) for i in range(20)]
        failing = await queue.enqueue("fail", message="out of ink")
        for job in [*jobs, failing]:
            assert job is not None
            await job.refresh(until_complete=30)
        # The worker's and this process's connections are PgBouncer's clients.
        clients = await _show(pgbouncer, "CLIENTS")
        assert sum(c["application_name"] == f"conveyor-{_schema(url)}" for c in clients) >= 2
    assert [job.result for job in jobs if job] == [i + 1 for i in range(20)]
    assert failing is not None and failing.status == Status.FAILED
    assert failing.error is not None and "out of ink" in failing.error


async def _pgbouncer_server_pids(bouncer: PgBouncer) -> set[int]:
    return {int(row["remote_pid"]) for row in await _show(bouncer, "SERVERS")}


async def test_wake_ups(pgbouncer: PgBouncer, url: str, wake: str) -> None:
    waiter = PostgresBackend.from_url(url, "main")
    producer = PostgresBackend.from_url(url, "main")
    await waiter.connect()
    await producer.connect()
    try:
        await waiter.wait_for_work(0)  # starts listening (direct); returns at once
        if wake == "direct":
            await wait_until(lambda: waiter.listening, message="listening")
        assert await waiter.claim("w", 10, 30, time.time()) == []  # seen every wake-up so far
        for _ in range(2):  # the second wake-up proves the first left nothing behind
            pending = asyncio.ensure_future(waiter.wait_for_work(LONG_WAIT))
            await asyncio.sleep(0.05)
            assert not pending.done()
            await producer.enqueue([NewJob(key=f"k{time.time()}", function="echo", payload="{}")])
            await asyncio.wait_for(pending, WOKEN_WITHIN)
            rows = await waiter.claim("w", 10, 30, time.time())
            assert len(rows) == 1
        finishing = asyncio.ensure_future(waiter.wait_for_finish([rows[0].key], LONG_WAIT))
        await asyncio.sleep(0.05)
        await producer.update(rows[0].key, '{"progress":1}')
        await asyncio.wait_for(finishing, WOKEN_WITHIN)
        # LISTEN and the presence lock are on sessions of their own, never PgBouncer's.
        async with await psycopg.AsyncConnection.connect(postgres_url()) as conn:
            cur = await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %%'"
                " AND application_name = %s",
                (f"conveyor-{_schema(url)}",),
            )
            listeners = {row[0] for row in await cur.fetchall()}
        presence = waiter._presence
        if wake == "direct":
            assert presence is not None and presence.held("w") and presence.pid is not None
            assert len(listeners) == 1
            assert not (listeners | {presence.pid}) & await _pgbouncer_server_pids(pgbouncer)
        else:
            assert presence is None and not listeners and not waiter.listening
    finally:
        await waiter.disconnect()
        await producer.disconnect()


@pytest.mark.slow
async def test_a_killed_worker_process_job_is_recovered(url: str, queue: Queue, wake: str) -> None:
    # With direct_url the dead worker's presence lock goes with its session: its job comes
    # back within a sweep or so, long before its lease ends. Polling, it waits for its lease.
    lease_s = 20.0 if wake == "direct" else 2.0
    job = await queue.enqueue("sleep", seconds=1.0, value="again", retries=2, key="victim")
    assert job is not None

    async def active() -> bool:
        stored = await queue.job("victim")
        return stored is not None and stored.status == Status.ACTIVE

    async with WorkerProcess(url, "main", lease_s=lease_s, concurrency=1) as doomed:
        await wait_until(active, timeout=20, message="the doomed worker's job")
        async with running_worker(queue, TEST_FUNCTIONS, lease_s=5.0) as rescuer:
            await wait_until(lambda: rescuer.idle, message="the rescuer is up")
            doomed.kill()
            killed_at = time.monotonic()
            await job.refresh(until_complete=30)
            recovered_after = time.monotonic() - killed_at
    assert job.status == Status.COMPLETE and job.result == "again" and job.attempts == 2
    assert job.worker_id == rescuer.id
    if wake == "direct":
        assert recovered_after < lease_s / 2, recovered_after


async def test_transactional_enqueue_through_pgbouncer(pgbouncer: PgBouncer, queue: Queue) -> None:
    # The caller's connection goes through PgBouncer too (without prepared statements).
    async with await psycopg.AsyncConnection.connect(
        pgbouncer.url(), prepare_threshold=None
    ) as conn:
        await check_rollback_and_commit(queue, conn)


async def test_the_admin_service_through_pgbouncer(queue: Queue) -> None:
    admin = Admin.from_settings({"queue": queue, "functions": TEST_FUNCTIONS})
    async with running_worker(queue, TEST_FUNCTIONS) as worker:
        jobs = [await queue.enqueue("echo", value=i) for i in range(3)]
        jobs.append(await queue.enqueue("fail", message="paper jam"))
        for job in jobs:
            assert job is not None
            await job.refresh(until_complete=20)
        await queue.enqueue("echo", key="later", scheduled=time.time() + 3600)

        async def overview_with_worker() -> Any:
            overview = await admin.overview()
            return overview if any(w.id == worker.id for w in overview.workers) else None

        overview = await wait_until(overview_with_worker, message="the worker's record")
        assert (await admin.health()).healthy
    assert (overview.completed, overview.failed, overview.scheduled) == (3, 1, 1)
    page = await admin.runs(limit=2)
    assert page.total == 4 and len(page.runs) == 2
    [failed] = (await admin.runs(status="failed")).runs
    detail = await admin.run(failed.run_id)
    assert detail.kwargs == {"message": "paper jam"} and detail.job_status == "failed"
    queued = await admin.jobs(["scheduled"])
    assert [info.key for info in queued.jobs] == ["later"]


async def test_a_large_enqueue_is_pipelined_in_one_transaction(queue: Queue) -> None:
    # More than one chunk: several statements pipelined in one transaction, through PgBouncer.
    jobs = await queue.enqueue_many([Job("echo", kwargs={"value": i}) for i in range(2500)])
    assert len(jobs) == 2500 and all(jobs)
    assert (await queue.count("queued")) == 2500


async def test_a_direct_url_to_another_database_is_not_used(
    pgbouncer: PgBouncer, caplog: pytest.LogCaptureFixture
) -> None:
    # Same server, database "postgres": a LISTEN there would hear nothing, locks there
    # would vouch for nobody. The backend works on, polling, and vouches for no lease.
    other = postgres_url().rsplit("/", 1)[0] + "/postgres"
    url = pgbouncer.queue_url("direct").split("&direct_url=")[0] + f"&direct_url={other}"
    backend = PostgresBackend.from_url(url, "main")
    await backend.connect()
    try:
        caplog.set_level(logging.WARNING, logger="conveyor.backends.postgres")
        await backend.enqueue([NewJob(key="a", function="echo", payload="{}")])
        [row] = await backend.claim("w", 1, 30, time.time())
        await backend.wait_for_work(0)
        await wait_until(
            lambda: "direct_url reaches database 'postgres'" in caplog.text,
            message="the mismatch logged",
        )
        assert not backend.listening
        async with await psycopg.AsyncConnection.connect(postgres_url()) as conn:
            cur = await conn.execute(
                f'SELECT owner_present FROM "{_schema(url)}".jobs WHERE key = %s', (row.key,)
            )
            assert await cur.fetchall() == [(False,)]
    finally:
        await backend.drop()
        await backend.disconnect()


def test_the_documented_urls_mean_what_the_page_says() -> None:
    example = Path(__file__).parents[2] / "examples/docs/backends/postgres_options.py"
    names = runpy.run_path(str(example))
    for name in ("behind_pgbouncer", "with_tls"):
        settings = names[name].backend.settings
        assert settings.pgbouncer == "transaction" and settings.prepare_threshold is None
        assert settings.direct_url.startswith("postgresql://app@db.internal:5432/shop")
        assert settings.poll_interval is None
    polling = names["polling"].backend.settings
    assert polling.poll_interval == 0.5 and not polling.direct_url


@pytest.mark.slow
async def test_a_worker_carries_on_across_a_restart_of_pgbouncer(tmp_path: Path, wake: str) -> None:
    bouncer = PgBouncer(postgres_url(), tmp_path).start()
    url = bouncer.queue_url(wake)
    queue = Queue.from_url(url, name="main")
    try:
        await queue.connect()
        async with WorkerProcess(url, "main", concurrency=2):
            before = await queue.enqueue("add", a=1, b=1)
            assert before is not None
            await before.refresh(until_complete=30)
            bouncer.restart()  # every client connection through it is cut
            assert bouncer.log().count("process up") == 2
            after = [await queue.enqueue("add", a=i, b=2) for i in range(5)]
            for job in after:
                assert job is not None
                await job.refresh(until_complete=30)
        assert [job.result for job in after if job] == [i + 2 for i in range(5)]
    finally:
        await queue.backend.drop()  # type: ignore[attr-defined]
        await queue.disconnect()
        bouncer.close()
