"""The connection the PostgreSQL backend keeps beside its pool for single statements.

It serves statements once it is up, is replaced when killed, never hands a cancelled
statement's reply to the next one, keeps itself after an error, is closed with the backend,
is not made for a user's pool, and does not hammer a server that refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import psycopg

from backends import test_postgres
from backends.test_postgres import Factory, _job
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.database import Database, Held
from conveyor.testing import wait_until

url = test_postgres.url
schema = test_postgres.schema
admin = test_postgres.admin
make = test_postgres.make


def _db(backend: PostgresBackend) -> Database:
    return backend._database()


async def _held_pid(db: Database) -> int:
    """Run statements until the held connection serves one; its server pid."""

    async def serving() -> bool:
        [(pid,)] = await db.fetch("pid", "SELECT pg_backend_pid()", ())
        return db.held is not None and db.held._conn is not None and pid == _pid(db.held)

    await wait_until(serving, message="the held connection serves a statement")
    assert db.held is not None
    return _pid(db.held)


def _pid(held: Held) -> int:
    assert held._conn is not None
    return held._conn.info.backend_pid


async def _app_pids(admin: Any, schema: str) -> set[int]:
    cur = await admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
        (f"conveyor-{schema}",),
    )
    return {row[0] for row in await cur.fetchall()}


async def test_a_killed_held_connection_is_replaced(make: Factory, admin: Any) -> None:
    backend = await make()
    db = _db(backend)
    pid = await _held_pid(db)
    await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The statements right after the kill run on the pool; none fails.
    for i in range(5):
        assert await backend.enqueue([_job(f"after-{i}")]) == [True]
    assert await _held_pid(db) != pid
    assert await backend.count(["queued"]) == {"queued": 5}


async def test_a_cancelled_statement_leaves_no_reply_for_the_next(make: Factory) -> None:
    backend = await make()
    db = _db(backend)
    await _held_pid(db)
    sleeper = asyncio.ensure_future(db.fetch("sleep", "SELECT 'late', pg_sleep(30)", ()))
    await wait_until(lambda: db.held is not None and db.held._busy, message="statement sent")
    sleeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sleeper
    for i in range(20):
        assert await db.fetch("echo", "SELECT %s::int", (i,)) == [(i,)]
    # psycopg cancels the statement on the server and waits until the connection is idle,
    # so it may be kept; whichever connection serves now answers its own statement.
    await _held_pid(db)


async def test_an_error_keeps_the_held_connection(make: Factory) -> None:
    backend = await make()
    db = _db(backend)
    pid = await _held_pid(db)
    with contextlib.suppress(Exception):
        await db.fetch("fails", "SELECT 1 / 0", ())
    assert await db.fetch("echo", "SELECT 7", ()) == [(7,)]
    assert await _held_pid(db) == pid  # idle after the error: kept


async def test_disconnect_closes_every_connection(make: Factory, admin: Any, schema: str) -> None:
    backend = await make()
    await _held_pid(_db(backend))
    assert await _app_pids(admin, schema)
    await backend.disconnect()

    async def none_left() -> bool:
        return not await _app_pids(admin, schema)

    await wait_until(none_left, message="no connection left")


async def test_a_failed_connect_waits_before_trying_again() -> None:
    attempts: list[float] = []

    async def refuse() -> psycopg.AsyncConnection[Any]:
        attempts.append(time.monotonic())
        raise psycopg.OperationalError("refused")

    held = Held(refuse)
    try:
        assert held.take() is None
        await wait_until(lambda: held._task is None and len(attempts) == 1, message="tried")
        for _ in range(50):
            assert held.take() is None  # within the second: no new attempt
            await asyncio.sleep(0)
        assert len(attempts) == 1
    finally:
        await held.close()
