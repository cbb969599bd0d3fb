"""The log sink's own rules (caps, the bound on waiting lines, rows) and the backends'
one-step write of logs with transitions (on PostgreSQL: one transaction, on every kind of
pool the backend supports)."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from conveyor.backends import backend_from_url
from conveyor.backends.base import Backend, FinishesWithLogs, LogRow, NewJob, RunEnd, Transition
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.config import split_url
from conveyor.errors import BackendError
from conveyor.observability.logs import LogSink
from conveyor.testing.fixtures import backend_url_for

logger = logging.getLogger("tests.log_capture")


@pytest.fixture
def sink() -> Iterator[LogSink]:
    sink = LogSink(json.dumps, max_lines=5, max_bytes=100, plain_json=True, max_waiting=8)
    sink.install()
    yield sink
    sink.uninstall()


def test_rows_are_numbered_per_run_in_order(sink: LogSink) -> None:
    first = sink.start_run("a")
    logger.info("a %d", 1)
    sink.end_run(first)
    second = sink.start_run("b")
    logger.info("b %d", 1)

    def in_thread() -> None:
        logger.warning("b thread")

    thread = threading.Thread(target=contextvars.copy_context().run, args=(in_thread,))
    thread.start()
    thread.join()
    sink.end_run(second)
    logger.info("outside any run")
    rows = sink.take()
    assert [(run_id, seq, level, message) for run_id, seq, _, level, message, _ in rows] == [
        ("a", 1, "INFO", "a 1"),
        ("b", 1, "INFO", "b 1"),
        ("b", 2, "WARNING", "b thread"),
    ]
    assert json.loads(rows[0][5])["function"] == "test_rows_are_numbered_per_run_in_order"
    assert sink.take() == [] and sink.pending == 0


def test_lines_over_the_caps_are_dropped_and_reported_last(sink: LogSink) -> None:
    token = sink.start_run("r")
    logger.info("x" * 101)  # over the byte cap alone
    for i in range(7):
        logger.info("line %d", i)
    sink.end_run(token)  # the drops are found by take(), after the end of the run
    rows = sink.take()
    assert [row[4] for row in rows[:5]] == [f"line {i}" for i in range(5)]
    assert [row[1] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1][3] == "WARNING"
    assert rows[-1][4].startswith("3 log lines (113 bytes) dropped")


def test_a_flood_between_writes_is_bounded_and_counted(sink: LogSink) -> None:
    token = sink.start_run("r")
    for i in range(12):  # the buffer holds 8 lines: 4 are dropped as they come
        logger.info("%d", i)
    assert sink.pending == 8
    sink.end_run(token)
    rows = sink.take()
    assert [row[4] for row in rows[:5]] == ["0", "1", "2", "3", "4"]
    assert rows[-1][4].startswith("7 log lines (9 bytes) dropped")
    assert len(rows) == 6


def test_failed_rows_come_back_first(sink: LogSink) -> None:
    token = sink.start_run("r")
    logger.info("one")
    failed = sink.take()
    logger.info("two")
    sink.requeue(failed)
    sink.end_run(token)
    assert [row[4] for row in sink.take()] == ["one", "two"]


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis", "postgres"])
async def test_finish_with_logs_stores_both(kind: str, tmp_path: Path) -> None:
    backend = backend_from_url(backend_url_for(kind, tmp_path), "logs")
    await backend.connect()
    try:
        assert isinstance(backend, FinishesWithLogs)
        run_id = await _claimed(backend)
        await backend.finish_with_logs([_ended(run_id, "complete")], _rows(run_id))
        await _assert_finished_with_lines(backend, run_id)
    finally:
        await backend.drop()
        await backend.disconnect()


@pytest.fixture(params=["prepared", "user-pool-no-autocommit", "pgbouncer"])
async def postgres_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[PostgresBackend]:
    """A PostgreSQL backend on its own schema: statements prepared from their first run, on
    a user's pool of one connection without autocommit, or with prepared statements off."""
    url = backend_url_for("postgres", tmp_path)
    pool: AsyncConnectionPool[Any] | None = None
    if request.param == "prepared":
        backend = PostgresBackend.from_url(url, "logs", prepare_threshold=0)
    elif request.param == "pgbouncer":
        backend = PostgresBackend.from_url(url, "logs", prepare_threshold=None)
    else:
        conninfo, _ = split_url(url)
        pool = AsyncConnectionPool(
            conninfo, kwargs={"autocommit": False}, min_size=1, max_size=1, open=False
        )
        await pool.open()
        backend = PostgresBackend.from_url(url, "logs", pool=pool)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.drop()
        await backend.disconnect()
        if pool is not None:
            await pool.close()


async def test_postgres_finish_with_logs_stores_both_or_neither(
    postgres_backend: PostgresBackend,
) -> None:
    backend = postgres_backend
    run_id = await _claimed(backend)
    refused = _ended(run_id, "no-such-status")  # the jobs_status constraint refuses it
    with pytest.raises(BackendError, match="finish_with_logs"):
        await backend.finish_with_logs([refused], _rows(run_id))
    assert await backend.read_logs(run_id, 0, 10) == []
    (job,) = await backend.get(["k"])
    assert job is not None and job.status == "active"
    run = await backend.get_run(run_id)
    assert run is not None and run.status == "running"
    # The same connection (a pool of one, for the user's pool) is usable after the failure,
    # and a call run twice, as a retry after a lost connection is, stores each line once.
    for _ in range(2):
        await backend.finish_with_logs([_ended(run_id, "complete")], _rows(run_id))
    await _assert_finished_with_lines(backend, run_id)
    extras = [line.extra for line in await backend.read_logs(run_id, 0, 10)]
    assert extras == [b"", "{}"]  # each of its type, as append_logs keeps them


async def _claimed(backend: Backend) -> str:
    """Enqueue and claim the job ``k``; its run's id."""
    await backend.enqueue([NewJob(key="k", function="f", payload=b"queued")])
    (row,) = await backend.claim("w", 1, 30, 0)
    assert row.run_id is not None
    return row.run_id


def _ended(run_id: str, status: str) -> Transition:
    run_end = RunEnd(run_id=run_id, status=status, finished_ms=1)
    return Transition(key="k", payload=b"done", status=status, run=run_end)


def _rows(run_id: str) -> list[LogRow]:
    return [(run_id, 2, 1.5, "INFO", "second", "{}"), (run_id, 1, 1.0, "INFO", "first", b"")]


async def _assert_finished_with_lines(backend: Backend, run_id: str) -> None:
    lines = await backend.read_logs(run_id, 0, 10)
    assert [(ln.seq, ln.ts, ln.level, ln.message, _text(ln.extra)) for ln in lines] == [
        (1, 1.0, "INFO", "first", ""),
        (2, 1.5, "INFO", "second", "{}"),
    ]
    (stored,) = await backend.get(["k"])
    assert stored is not None and stored.status == "complete"
    run = await backend.get_run(run_id)
    assert run is not None and run.status == "complete"


def _text(payload: bytes | str) -> str:
    return payload.decode() if isinstance(payload, bytes) else payload
