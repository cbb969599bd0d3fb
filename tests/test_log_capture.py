"""The log sink's own rules (caps, the bound on waiting lines, rows) and the backends'
one-step write of logs with transitions."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.backends import backend_from_url
from conveyor.backends.base import FinishesWithLogs, NewJob, RunEnd, Transition
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


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
async def test_finish_with_logs_stores_both(kind: str, tmp_path: Path) -> None:
    backend = backend_from_url(backend_url_for(kind, tmp_path), "logs")
    await backend.connect()
    try:
        assert isinstance(backend, FinishesWithLogs)
        await backend.enqueue([NewJob(key="k", function="f", payload=b"queued")])
        (row,) = await backend.claim("w", 1, 30, 0)
        assert row.run_id is not None
        run_end = RunEnd(run_id=row.run_id, status="complete", finished_ms=1)
        done = Transition(key="k", payload=b"done", status="complete", run=run_end)
        logs = [
            (row.run_id, 2, 1.5, "INFO", "second", "{}"),
            (row.run_id, 1, 1.0, "INFO", "first", b""),
        ]
        await backend.finish_with_logs([done], logs)
        lines = await backend.read_logs(row.run_id, 0, 10)
        assert [(ln.seq, ln.ts, ln.level, ln.message, _text(ln.extra)) for ln in lines] == [
            (1, 1.0, "INFO", "first", ""),
            (2, 1.5, "INFO", "second", "{}"),
        ]
        (stored,) = await backend.get(["k"])
        assert stored is not None and stored.status == "complete"
        run = await backend.get_run(row.run_id)
        assert run is not None and run.status == "complete"
    finally:
        await backend.drop()


def _text(payload: bytes | str) -> str:
    return payload.decode() if isinstance(payload, bytes) else payload
