"""What the SQLite backend promises beyond the conformance suite.

Its schema (migrations end where ``schema.sql`` starts), its URLs, its files shared by
processes (no claim twice, none lost, wake-ups across processes), durability across a
reopen, and payloads coming back exactly as bytes or str. Fencing tokens and claim order
are in test_sqlite_fencing.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import queue
import re
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends import backend_from_url
from conveyor.backends.base import Lease, LogLine, NewJob, RunEnd, RunFilter, Transition
from conveyor.backends.memory import MemoryBackend
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.schema import migrate
from conveyor.backends.sqlite.sql import load_migrations, load_queries
from conveyor.errors import BackendError, ConfigurationError
from conveyor.testing.backends import isolated_url
from conveyor.testing.helpers import wait_until

# Generous: a wait that is not woken up runs into it, and the test says so.
LONG_WAIT = 30.0


@pytest.fixture
def url(tmp_path: Path) -> str:
    return isolated_url("sqlite", tmp_path)


@pytest.fixture
async def backend(url: str) -> AsyncIterator[SQLiteBackend]:
    b = SQLiteBackend.from_url(url, "main")
    await b.connect()
    yield b
    await b.drop()


def _complete(key: str, run_id: str | None, payload: bytes | str = b"done") -> Transition:
    run = RunEnd(run_id, "complete", int(time.time() * 1000)) if run_id else None
    return Transition(key=key, payload=payload, status="complete", run=run)


# Schema and migrations


def _schema_of(path: Path) -> set[tuple[str, str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    conn.close()
    return {(t, n, tbl, re.sub(r"\s+", " ", sql or "").strip()) for t, n, tbl, sql in rows}


def _migrated_file(path: Path, use_schema: bool) -> list[int]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return migrate(conn, load_queries(), use_schema=use_schema)
    finally:
        conn.close()


def test_migrations_yield_exactly_schema_sql(tmp_path: Path) -> None:
    from_schema = _migrated_file(tmp_path / "schema.db", use_schema=True)
    from_migrations = _migrated_file(tmp_path / "migrations.db", use_schema=False)
    every = [m.version for m in load_migrations()]
    assert from_schema == from_migrations == every
    schema = _schema_of(tmp_path / "schema.db")
    assert {name for _, name, _, _ in schema} >= {"jobs", "marks", "runs", "logs", "workers"}
    assert schema == _schema_of(tmp_path / "migrations.db")


def test_every_table_has_a_queue_column(tmp_path: Path) -> None:
    _migrated_file(tmp_path / "q.db", use_schema=True)
    with sqlite3.connect(tmp_path / "q.db") as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name != 'conveyor_migrations'"
            )
        ]
        for table in tables:
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            assert "queue" in columns, table
    conn.close()


async def test_reconnect_applies_nothing_and_newer_schema_is_refused(
    url: str, tmp_path: Path
) -> None:
    first = SQLiteBackend.from_url(url, "main")
    await first.connect()
    await first.disconnect()
    path = first.settings.path
    assert _migrated_file(path, use_schema=True) == []
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO conveyor_migrations VALUES (9999, 'future', 0)")
    conn.close()
    with pytest.raises(ConfigurationError, match="newer"):
        await SQLiteBackend.from_url(url, "main").connect()


async def test_claim_walks_the_claim_index(backend: SQLiteBackend) -> None:
    # A plan regression would make every claim sort the whole backlog.
    sql = load_queries()["claim_candidates"]
    with sqlite3.connect(backend.settings.path) as conn:
        params = {"queue": "q", "priority": 0, "now": 0.0, "horizon": 0.0}
        plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    conn.close()
    assert "jobs_claim" in plan and "TEMP B-TREE" not in plan


# URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite://", Path.cwd() / "conveyor.db"),
        ("sqlite:///", Path.cwd() / "conveyor.db"),
        ("sqlite:///queue.db", Path.cwd() / "queue.db"),
        ("sqlite:///data/queue.db?synchronous=full", Path.cwd() / "data" / "queue.db"),
        ("sqlite:////tmp/abs/queue.db", Path("/tmp/abs/queue.db")),
    ],
)
def test_url_paths_follow_sqlalchemy(url: str, expected: Path) -> None:
    backend = backend_from_url(url, "q")
    assert isinstance(backend, SQLiteBackend)
    assert backend.settings.path == expected


def test_isolated_test_urls_are_absolute(tmp_path: Path) -> None:
    backend = SQLiteBackend.from_url(isolated_url("sqlite", tmp_path), "q")
    assert backend.settings.path.parent == tmp_path


def test_url_options_and_keyword_options() -> None:
    settings = SQLiteBackend.from_url(
        "sqlite:///x.db?synchronous=full&busy_timeout=100&poll_interval=0.05&wakeup=POLL", "q"
    ).settings
    assert (
        settings.synchronous,
        settings.busy_timeout_ms,
        settings.poll_interval,
        settings.wakeup,
    ) == ("FULL", 100, 0.05, "poll")
    assert SQLiteBackend.from_url("sqlite:///x.db", "q").settings.wakeup == "socket"
    assert (
        SQLiteBackend.from_url(
            "sqlite:///x.db?synchronous=full", "q", synchronous="OFF"
        ).settings.synchronous
        == "OFF"
    )


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db?colour=blue",
        "sqlite:///x.db?synchronous=sometimes",
        "sqlite:///x.db?wakeup=carrier-pigeon",
        "sqlite:///:memory:",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteBackend.from_url(url, "q")


async def test_operations_need_connect(url: str) -> None:
    backend = SQLiteBackend.from_url(url, "q")
    with pytest.raises(BackendError, match="connect"):
        await backend.enqueue([NewJob("k", "f", "p")])


# Payloads, durability, queues sharing a file


async def test_bytes_and_str_payloads_round_trip(backend: SQLiteBackend) -> None:
    binary = bytes(range(256))
    text = "héllo \u2603 {}"
    assert await backend.enqueue([NewJob("b", "f", binary), NewJob("s", "f", text)]) == [True] * 2
    got = await backend.get(["b", "s"])
    assert [row.payload if row else None for row in got] == [binary, text]
    claimed = {row.key: row for row in await backend.claim("w", 10, 30, time.time())}
    assert claimed["b"].payload == binary and claimed["s"].payload == text
    run_b, run_s = claimed["b"].run_id, claimed["s"].run_id
    assert run_b and run_s
    await backend.finish(
        [
            Transition("b", b"\x00end", "complete", run=RunEnd(run_b, "complete", 1, b"\xff")),
            Transition("s", "end", "complete", run=RunEnd(run_s, "complete", 1, "detail")),
        ]
    )
    assert [row.payload for row in await backend.list_jobs(None, 0, 10) if row] == [
        "end",
        b"\x00end",
    ]
    run = await backend.get_run(run_b)
    assert run is not None and run.detail == b"\xff"
    run = await backend.get_run(run_s)
    assert run is not None and run.detail == "detail"
    await backend.append_logs(
        [LogLine(run_b, 1, 1.0, "INFO", "m", b"\x01"), LogLine(run_b, 2, 1.0, "INFO", "m", "x")]
    )
    assert [line.extra for line in await backend.read_logs(run_b, 0, 10)] == [b"\x01", "x"]
    await backend.put_worker("w1", b"\x02", 60)
    await backend.put_worker("w2", "info", 60)
    assert await backend.workers() == {"w1": b"\x02", "w2": "info"}


async def test_everything_survives_a_reopen(url: str) -> None:
    first = SQLiteBackend.from_url(url, "main")
    await first.connect()
    await first.enqueue(
        [NewJob("done", "f", "p1"), NewJob("later", "f", "p2", due=time.time() + 3600)]
    )
    await first.enqueue([NewJob("waiting", "f", "p3")])
    [row] = await first.claim("w", 1, 30, time.time())
    assert row.key == "done" and row.run_id is not None
    await first.finish([_complete("done", row.run_id)])
    await first.append_logs([LogLine(row.run_id, 1, 1.0, "INFO", "kept")])
    await first.disconnect()

    second = SQLiteBackend.from_url(url, "main")
    await second.connect()
    try:
        done, later, waiting = await second.get(["done", "later", "waiting"])
        assert done is not None and done.status == "complete" and done.payload == b"done"
        assert later is not None and later.status == "queued"
        assert waiting is not None and waiting.payload == "p3"
        assert await second.count(["queued", "scheduled", "complete"]) == {
            "queued": 2,
            "scheduled": 1,
            "complete": 1,
        }
        runs, total = await second.list_runs(RunFilter(key="done"), 0, 10)
        assert total == 1 and runs[0].status == "complete"
        assert [line.message for line in await second.read_logs(row.run_id, 0, 10)] == ["kept"]
        [claimed] = await second.claim("w", 10, 30, time.time())
        assert claimed.key == "waiting"
    finally:
        await second.drop()


async def test_queues_sharing_a_file_share_nothing(url: str) -> None:
    a = SQLiteBackend.from_url(url, "a")
    b = SQLiteBackend.from_url(url, "b")
    await a.connect()
    await b.connect()
    try:
        await a.enqueue([NewJob("same", "f", "in a")])
        assert await b.enqueue([NewJob("same", "f", "in b")]) == [True]
        [row] = await b.claim("w", 10, 30, time.time())
        assert row.payload == "in b"
        await a.drop()
        assert await b.get(["same"]) != [None]
        assert await b.count(["active"]) == {"active": 1}
    finally:
        await a.disconnect()
        await b.drop()


async def test_claim_skips_scheduled_backlog_and_busy_groups(backend: SQLiteBackend) -> None:
    later = time.time() + 3600
    await backend.enqueue([NewJob(f"s{i}", "f", "p", priority=0, due=later) for i in range(200)])
    await backend.enqueue(
        [
            NewJob("low", "f", "p", priority=5),
            NewJob("g1", "f", "p", priority=1, group_key="g"),
            NewJob("g2", "f", "p", priority=1, group_key="g"),
            NewJob("h1", "f", "p", priority=2, group_key="h"),
        ]
    )
    first = await backend.claim("w", 10, 30, time.time())
    assert [row.key for row in first] == ["g1", "h1", "low"]
    assert await backend.claim("w", 10, 30, time.time()) == []  # g2 waits for g1
    await backend.finish([_complete("g1", first[0].run_id)])
    assert [row.key for row in await backend.claim("w", 10, 30, time.time())] == ["g2"]


# The reference: the same script gives the same answers on memory and SQLite


async def _script(b: Any, t: float) -> list[Any]:
    # t is the time of the first enqueue; the script's clock runs ahead of it, so that a
    # job due now (due at its enqueue time) is claimable at t + 1.
    out: list[Any] = [
        await b.enqueue(
            [
                NewJob("a", "f", b"A", priority=1),
                NewJob("b", "g", "B"),
                NewJob("c", "f", "C", group_key="grp"),
                NewJob("d", "f", "D", group_key="grp"),
                NewJob("e", "f", "E", due=t + 50),
                NewJob("m1", "f", "M", once="tok", once_ttl=10),
                NewJob("m2", "f", "M", once="tok", once_ttl=10),
                NewJob("b", "f", "dup"),
            ]
        )
    ]
    first = await b.claim("w1", 1, 30, t + 1)
    second = await b.claim("w2", 10, 30, t + 1)
    out += [first, second, await b.count(["queued", "active", "scheduled", "aborting"])]
    leases = [Lease(r.key, r.token) for r in first]
    out.append(await b.renew("w1", [*leases, Lease("missing", "1")], 60, t + 2))
    out.append(await b.abort(first[0].key, "aborting", t))
    out.append(await b.abort("e", "aborted", t))
    out.append(await b.renew("w1", leases, 60, t + 3))
    [x, y, z] = second[:3]
    stale = Transition(x.key, "stale", "complete", run=RunEnd(x.run_id, "failed", 4), token="7")
    out.append(
        await b.finish(
            [
                stale,
                Transition(
                    x.key,
                    "X",
                    "complete",
                    expire_at=t - 1,
                    run=RunEnd(x.run_id, "complete", 5, b"r"),
                    token=x.token,
                ),
                Transition(
                    y.key,
                    "Y",
                    "queued",
                    due=0,
                    run=RunEnd(y.run_id, "retried", 6, "d", "Boom É"),
                    token=y.token,
                ),
                Transition(
                    z.key,
                    "Z",
                    "failed",
                    delete=True,
                    run=RunEnd(z.run_id, "failed", 7, b"", "boom é"),
                ),
                Transition(x.key, "again", "failed", token=x.token),
            ]
        )
    )
    out += [await b.list_jobs(None, 0, 100), await b.list_jobs(["queued", "complete"], 1, 2)]
    # After the listings: update stamps touched_ms with the wall clock.
    out += [await b.update(y.key, "Y2", y.token), await b.update(y.key, "Y3")]
    recovered = await b.recover("w3", 10, 30, t + 100)
    out += [recovered, await b.expire(t + 20, 100)]
    out.append(await b.renew("w1", leases, 60, t + 101))  # lost: w3 took them over
    out.append(await b.update(first[0].key, "late", first[0].token))
    out.append(await b.renew("w3", [Lease(r.key, r.token) for r in recovered], 60, t + 102))
    out.append(await b.enqueue([NewJob("m3", "f", "M", once="tok", once_ttl=10)]))
    for f in (
        RunFilter(),
        RunFilter(status="failed"),
        RunFilter(function="g"),
        RunFilter(key=x.key),
        RunFilter(error_contains="BOOM é"),
        RunFilter(since_ms=int((t + 1) * 1000), until_ms=int((t + 1) * 1000) + 1),
    ):
        out.append(await b.list_runs(f, 1 if f == RunFilter() else 0, 2))
    out.append(await b.get_run("9999"))
    run = first[0].run_id
    await b.append_logs([LogLine(run, s, t, "INFO", f"l{s}") for s in (3, 1, 2)])
    out += [await b.read_logs(run, 1, 5), await b.purge_runs(int((t + 1) * 1000) + 1, 1)]
    await b.put_worker("dead", b"i", -1)
    await b.put_worker("live", "i", 60)
    return [*out, await b.workers(), await b.get(["a", "zz", "m3"])]


def _normalized(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, list | tuple):
        return [_normalized(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _normalized(v, ids) for k, v in value.items()}
    if hasattr(value, "run_id"):
        fields = dataclasses.asdict(value)
        # Run ids and tokens come from one sequence in both backends: one naming for both.
        for name in ("run_id", "token"):
            if fields.get(name) is not None:
                fields[name] = ids.setdefault(fields[name], f"id{len(ids)}")
        return (type(value).__name__, fields)
    return value


async def test_behaves_like_the_memory_backend(backend: SQLiteBackend) -> None:
    t = time.time()
    expected = _normalized(await _script(MemoryBackend("main"), t), {})
    assert _normalized(await _script(backend, t), {}) == expected


# Several processes


async def _collect(processes: list[Any], results: Any) -> dict[str, Any]:
    """Each process's result; fails at once, with exit codes, if a process died."""
    out: dict[str, Any] = {}
    deadline = time.monotonic() + 90
    while len(out) < len(processes):
        try:
            worker, value = await asyncio.to_thread(results.get, True, 0.2)
        except queue.Empty:
            codes = [process.exitcode for process in processes]
            assert all(code in (None, 0) for code in codes), f"a process failed: {codes}"
            assert time.monotonic() < deadline, "the processes did not finish"
            continue
        out[worker] = value
    for process in processes:
        await asyncio.to_thread(process.join, 30)
        assert process.exitcode == 0
    return out


def _claim_until_empty(url: str, worker: str, barrier: Any, results: Any) -> None:
    async def run() -> list[str]:
        backend = SQLiteBackend.from_url(url, "shared")
        await backend.connect()
        claimed: list[str] = []
        try:
            barrier.wait(30)
            while True:
                rows = await backend.claim(worker, 10, 60, time.time())
                if not rows:
                    if (await backend.count(["queued"]))["queued"] == 0:
                        return claimed
                    continue
                claimed.extend(row.key for row in rows)
                await backend.finish([_complete(row.key, row.run_id) for row in rows])
        finally:
            await backend.disconnect()

    results.put((worker, asyncio.run(run())))


@pytest.mark.slow
async def test_processes_sharing_a_file_claim_each_job_exactly_once(url: str) -> None:
    jobs = 1200
    backend = SQLiteBackend.from_url(url, "shared")
    await backend.connect()
    try:
        await backend.enqueue([NewJob(f"job-{i}", "f", f"p{i}") for i in range(jobs)])
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(3)
        results = context.Queue()
        processes = [
            context.Process(target=_claim_until_empty, args=(url, f"w{n}", barrier, results))
            for n in range(3)
        ]
        for process in processes:
            process.start()
        outcomes = await _collect(processes, results)
        claimed = [key for keys in outcomes.values() for key in keys]
        assert len(claimed) == len(set(claimed)) == jobs
        assert sum(1 for keys in outcomes.values() if keys) >= 2, "no contention happened"
        assert await backend.count(["queued", "active", "complete"]) == {
            "queued": 0,
            "active": 0,
            "complete": jobs,
        }
        _, runs = await backend.list_runs(RunFilter(status="complete"), 0, 1)
        assert runs == jobs
    finally:
        await backend.drop()


def _open_fresh_file_and_enqueue(url: str, worker: str, barrier: Any, results: Any) -> None:
    async def run() -> list[bool]:
        backend = SQLiteBackend.from_url(url, "fresh")
        barrier.wait(30)
        await backend.connect()
        try:
            return await backend.enqueue([NewJob(f"{worker}-{i}", "f", "p") for i in range(20)])
        finally:
            await backend.disconnect()

    results.put((worker, asyncio.run(run())))


@pytest.mark.slow
async def test_processes_creating_a_new_file_together_create_it_once(url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    processes = [
        context.Process(target=_open_fresh_file_and_enqueue, args=(url, f"p{n}", barrier, results))
        for n in range(4)
    ]
    for process in processes:
        process.start()
    outcomes = await _collect(processes, results)
    assert all(inserted == [True] * 20 for inserted in outcomes.values())
    backend = SQLiteBackend.from_url(url, "fresh")
    await backend.connect()
    try:
        assert await backend.count(["queued"]) == {"queued": 80}
        with sqlite3.connect(backend.settings.path) as conn:
            versions = [v for (v,) in conn.execute("SELECT version FROM conveyor_migrations")]
        conn.close()
        assert versions == [m.version for m in load_migrations()]
    finally:
        await backend.drop()


_ENQUEUER = """
import asyncio, sys
from conveyor.backends.memory import MemoryBackend
from conveyor.backends.base import NewJob
from conveyor.backends.sqlite import SQLiteBackend

async def main():
    backend = SQLiteBackend.from_url(sys.argv[1], "wake")
    await backend.connect()
    await backend.enqueue([NewJob(sys.argv[2], "f", "from another process")])
    await backend.disconnect()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_wait_for_work_wakes_on_another_process_enqueue(url: str) -> None:
    backend = SQLiteBackend.from_url(url, "wake")
    await backend.connect()
    try:
        waiting = asyncio.create_task(backend.wait_for_work(LONG_WAIT))
        await asyncio.sleep(0)  # let it start waiting before the other process starts
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _ENQUEUER, url, "remote"
        )
        rows: list[Any] = []
        while not rows:  # a wake-up may be spurious: wait again until the job is there
            started = time.monotonic()
            await waiting
            assert time.monotonic() - started < LONG_WAIT - 1, "not woken by the other process"
            rows = await backend.claim("w", 1, 30, time.time())
            waiting = asyncio.create_task(backend.wait_for_work(LONG_WAIT))
        waiting.cancel()
        assert rows[0].key == "remote" and rows[0].payload == "from another process"
        assert await process.wait() == 0
    finally:
        await backend.drop()


async def test_wait_for_work_wakes_on_another_connection_and_on_own_enqueue(url: str) -> None:
    waiter = SQLiteBackend.from_url(url, "wake")
    other = SQLiteBackend.from_url(url, "wake")
    await waiter.connect()
    await other.connect()
    try:
        for producer, key in ((other, "by-other"), (waiter, "by-self")):
            started = time.monotonic()
            waiting = asyncio.create_task(waiter.wait_for_work(LONG_WAIT))
            await asyncio.sleep(0)
            await producer.enqueue([NewJob(key, "f", "p")])
            await waiting
            assert time.monotonic() - started < LONG_WAIT - 1
            assert [row.key for row in await waiter.claim("w", 10, 30, time.time())] == [key]
    finally:
        await other.disconnect()
        await waiter.drop()


async def test_wait_for_work_returns_by_the_next_due_time(backend: SQLiteBackend) -> None:
    due = time.time() + 0.3
    await backend.enqueue([NewJob("soon", "f", "p", due=due)])
    assert await backend.claim("w", 1, 30, time.time()) == []
    while time.time() < due:
        await backend.wait_for_work(LONG_WAIT)  # returns by `due`, not after LONG_WAIT
    assert [row.key for row in await backend.claim("w", 1, 30, time.time())] == ["soon"]


async def test_wait_for_finish_wakes_on_another_connection_finish(url: str) -> None:
    waiter = SQLiteBackend.from_url(url, "fin")
    worker = SQLiteBackend.from_url(url, "fin")
    await waiter.connect()
    await worker.connect()
    try:
        await waiter.enqueue([NewJob("k", "f", "p")])
        [row] = await worker.claim("w", 1, 30, time.time())
        status = None
        waiting = asyncio.create_task(waiter.wait_for_finish(["k"], LONG_WAIT))
        await asyncio.sleep(0)
        await worker.finish([_complete("k", row.run_id)])
        while status != "complete":
            started = time.monotonic()
            await waiting
            assert time.monotonic() - started < LONG_WAIT - 1
            [found] = await waiter.get(["k"])
            status = found.status if found else None
            waiting = asyncio.create_task(waiter.wait_for_finish(["k"], LONG_WAIT))
        waiting.cancel()
    finally:
        await worker.disconnect()
        await waiter.drop()


async def test_the_wal_is_checkpointed_off_the_operations_path(backend: SQLiteBackend) -> None:
    from conveyor.backends.sqlite.checkpoints import BACKSTOP_PAGES, INTERVAL

    wal = backend.settings.path.with_name(backend.settings.path.name + "-wal")

    def restarts() -> int:
        # The WAL header's checkpoint sequence: SQLite adds one each time a write starts
        # the WAL over after a complete checkpoint. (PRAGMA wal_checkpoint would
        # checkpoint by itself.)
        with wal.open("rb") as file:
            return int.from_bytes(file.read(16)[12:16], "big")

    # The operations' commits leave checkpoints to the thread up to a backstop far above
    # SQLite's default (1,000 pages, a checkpoint in every fiftieth pickup or so).
    threshold = await backend._run(
        lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()
    )
    assert threshold == (BACKSTOP_PAGES,) and BACKSTOP_PAGES >= 4000
    await backend.enqueue([NewJob("first", "f", "p")])
    before = restarts()
    for i in range(200):
        await backend.enqueue([NewJob(f"k{i}", "f", "p" * 500)])
    # Between bursts, the backend's own thread checkpoints, and the next write starts over.
    checkpoints = backend._checkpoints
    assert checkpoints is not None

    async def started_over() -> bool:
        await asyncio.sleep(INTERVAL)
        await backend.count(["queued"])  # used: starts a checkpoint on its thread
        await wait_until(lambda: checkpoints._running is None)
        await backend.enqueue([NewJob(f"late-{time.monotonic()}", "f", "p")])
        return restarts() > before

    await wait_until(started_over, LONG_WAIT, message="the WAL started over")
