"""Conveyor with a million jobs: enqueue, drain, admin pages, memory, size and the purge.

For each size N (10,000, 100,000 and 1,000,000 by default) and each backend (SQLite,
Redis, PostgreSQL), on a storage of its own (a file, a key prefix on a Redis server this
script starts on a spare port, a PostgreSQL schema), in this order:

1. **bulk enqueue**: N no-op jobs through ``Queue.enqueue_many``, 10,000 per call; jobs/s,
   and the server's CPU per job (measured as in 2).
2. **drain**: one worker (the ``Worker`` class in this process, defaults: run records and
   log capture on) at concurrency 100 runs all N. The drain rate is taken over the first
   ``--slice`` jobs (10,000: from the worker's start until the slice's last job has
   returned), so that the 1,000,000 case is judged on the same work as the 10,000 one;
   the whole drain's rate is printed too. The worker's CPU (``getrusage``) and the
   backend server's CPU per job over the whole drain: Redis ``INFO cpu`` of the server
   this script started (nobody else uses it), PostgreSQL the ``/proc`` CPU time of the
   server processes serving this schema's connections (``application_name``).
3. **size after churn**: PostgreSQL table and index sizes, SQLite file size, Redis
   ``used_memory``, now that N jobs have gone through (their finished rows live on until
   their ``ttl``, as in production) and N runs are stored.
4. **N waiting jobs again** (enqueued as in 1): Redis memory per waiting job is the
   difference of ``used_memory`` divided by N.
5. **admin pages** with N waiting jobs and N stored runs, through ``conveyor.admin``, the
   service the console reads: the overview (``Admin.overview``: counts, latency, workers,
   24 h run totals), the overview's chart (``Admin.throughput`` over 24 h by the hour), the
   runs page (``Admin.runs``, 50 newest with the total) and ``Queue.info()``; the median
   of 5 calls after one warm-up call. On PostgreSQL once more after ``VACUUM (ANALYZE)`` of
   the schema's tables, the state autovacuum leaves them in some time later (counts can
   then be read from an index alone, without visiting each row).
6. **purge while claiming**: the retention purge of every run stored in 2 (N runs, in its
   batches of 1,000; run in a separate process, as the cron job runs in some worker)
   while a worker at concurrency 100 keeps claiming the N waiting jobs. Prints the purge's
   time, its longest batch, and the longest claim (``backend.claim`` call) and the longest
   gap between two job starts while it ran; and for comparison the longest claim in the
   half second before it started (the load of the machine, not the purge).

Everything created is deleted at the end of each case. Prints a table; asserts nothing.
The machine's other load matters (the figures are printed with the load average).

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000] [--backends sqlite,redis,postgres]
        [--out FILE.jsonl]       # append each case as one JSON line (for long runs)
    .venv/bin/python benchmarks/scale.py --table FILE.jsonl ...   # the table of saved cases
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from conveyor import Job, Queue, Worker
from conveyor.admin import Admin
from conveyor.observability.retention import PURGE_BATCH, purge_runs_older_than

HERE = Path(__file__).resolve().parent
ENQUEUE_CHUNK = 10_000
ADMIN_CALLS = 5
#: Seconds of claiming measured before the purge starts.
BASELINE_S = 0.5


def log(message: str) -> None:
    """Progress on stderr, with the time (long runs are polled from their output file)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def remove_files(directory: Path, token: str) -> None:
    """Delete a SQLite case's database file and its -wal and -shm companions."""
    for path in directory.glob(f"{token}.db*"):
        path.unlink()


# Servers and their CPU


class RedisServer:
    """A redis-server of this script's own on a spare port: its memory and CPU are ours."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def wait_ready(self) -> None:
        import redis.asyncio as redis

        client = redis.Redis.from_url(self.url)
        try:
            for _ in range(100):
                with contextlib.suppress(Exception):
                    await client.ping()
                    return
                await asyncio.sleep(0.05)
            raise RuntimeError(f"redis-server on port {self.port} did not start")
        finally:
            await client.aclose()

    async def info(self, section: str) -> dict[str, Any]:
        import redis.asyncio as redis

        client = redis.Redis.from_url(self.url)
        try:
            return dict(await client.info(section))
        finally:
            await client.aclose()

    async def cpu(self) -> float:
        info = await self.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    async def used_memory(self) -> int:
        return int((await self.info("memory"))["used_memory"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PostgresCpu:
    """CPU time of the PostgreSQL server processes that serve one schema's connections."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.application = f"conveyor-{schema}"[:63]
        self.start: dict[int, float] = {}

    async def _pids(self) -> list[int]:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (self.application,),
            )
            return [int(row[0]) for row in await cursor.fetchall()]

    async def begin(self) -> None:
        self.start = {pid: _proc_cpu(pid) for pid in await self._pids()}

    async def used(self) -> float:
        """CPU seconds since :meth:`begin` (a connection opened since counts from 0)."""
        return sum(_proc_cpu(pid) - self.start.get(pid, 0.0) for pid in await self._pids())


# One case


class Case:
    """One backend at one size: its queue, its storage and its figures."""

    def __init__(self, args: argparse.Namespace, backend: str, n: int, workdir: Path) -> None:
        self.args = args
        self.backend = backend
        self.n = n
        self.token = f"scale_{uuid.uuid4().hex[:8]}"
        self.workdir = workdir
        self.result: dict[str, Any] = {"backend": backend, "n": n, "slice": min(args.slice, n)}
        self.url = {
            "sqlite": f"sqlite:///{workdir / self.token}.db",
            "redis": f"{args.redis_server.url if args.redis_server else ''}?prefix={self.token}",
            "postgres": f"{args.pg_url}?schema={self.token}",
        }[backend]
        self.started_at: list[float] = []
        self.slice_done = asyncio.Event()
        self.hundred_started = asyncio.Event()
        self.slice_t = 0.0
        self.claims: list[tuple[float, float]] = []

    def queue(self) -> Queue:
        return Queue.from_url(self.url, name="scale")

    async def noop(self, ctx: dict[str, Any]) -> None:
        self.started_at.append(time.perf_counter())
        if len(self.started_at) == 100:
            self.hundred_started.set()
        if len(self.started_at) == self.result["slice"]:
            self.slice_t = time.perf_counter()
            self.slice_done.set()

    def timed_claims(self, queue: Queue) -> None:
        """Record the start and length of every ``claim`` call of this queue's backend."""
        backend = queue.backend
        claim: Callable[..., Awaitable[Any]] = backend.claim

        async def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await claim(*a, **kw)
            finally:
                self.claims.append((t0, time.perf_counter() - t0))

        backend.claim = timed  # type: ignore[method-assign]

    async def enqueue(self, queue: Queue) -> float:
        t0 = time.perf_counter()
        for start in range(0, self.n, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, self.n - start)
            await queue.enqueue_many(Job("noop") for _ in range(count))
        return self.n / (time.perf_counter() - t0)

    async def server_cpu_begin(self) -> Callable[[], Awaitable[float | None]]:
        """Start counting the backend server's CPU; returns what reads the seconds used."""
        if self.backend == "redis":
            server = self.args.redis_server
            before = await server.cpu()

            async def redis_used() -> float | None:
                return float(await server.cpu() - before)

            return redis_used
        if self.backend == "postgres":
            counter = PostgresCpu(self.args.pg_url, self.token)
            await counter.begin()
            return counter.used

        async def nothing() -> float | None:
            return None

        return nothing

    async def drain(self, queue: Queue) -> None:
        worker = Worker(queue, [("noop", self.noop)], concurrency=100, burst=True, retention_s=None)
        server_cpu = await self.server_cpu_begin()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await worker.start()
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        used = await server_cpu()
        done = len(self.started_at)
        self.result.update(
            drain_slice_rate=self.result["slice"] / (self.slice_t - t0),
            drain_rate=done / wall,
            drained=done,
            worker_cpu_ms=cpu / done * 1000,
            server_cpu_ms=used / done * 1000 if used is not None else None,
        )

    async def slice_rate(self, queue: Queue) -> float:
        """Jobs/s of a new worker at c=100 over the queue's next ``slice`` jobs."""
        self.started_at.clear()
        self.slice_done.clear()
        self.hundred_started.clear()
        worker = Worker(queue, [("noop", self.noop)], concurrency=100, retention_s=None)
        t0 = time.perf_counter()
        task = asyncio.create_task(worker.start())
        await self.slice_done.wait()
        rate = float(self.result["slice"] / (self.slice_t - t0))
        await worker.stop()
        await task
        return rate

    async def sizes(self, queue: Queue) -> None:
        if self.backend == "postgres":
            import psycopg

            async with await psycopg.AsyncConnection.connect(self.args.pg_url) as conn:
                cursor = await conn.execute(
                    "SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid) "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relkind = 'r'",
                    (self.token,),
                )
                rows = await cursor.fetchall()
            self.result["pg_sizes"] = {name: [table, index] for name, table, index in rows}
        elif self.backend == "sqlite":
            self.result["sqlite_bytes"] = sum(
                p.stat().st_size for p in self.workdir.glob(f"{self.token}.db*")
            )
        else:
            self.result["redis_used_after_churn"] = await self.args.redis_server.used_memory()

    async def vacuum(self) -> None:
        """VACUUM (ANALYZE) this schema's tables, as autovacuum does in time."""
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.args.pg_url, autocommit=True) as conn:
            for table in ("jobs", "runs"):
                await conn.execute(f'VACUUM (ANALYZE) "{self.token}".{table}')

    async def admin_pages(self, queue: Queue, suffix: str = "") -> None:
        admin = Admin(queue, {"noop": self.noop})
        now = time.time()
        until = (now // 3600 + 1) * 3600
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "overview": lambda: admin.overview(),
            "chart": lambda: admin.throughput(until - 86400, 3600, until=until),
            "runs": lambda: admin.runs(limit=50),
            "info": lambda: queue.info(),
        }
        for name, call in calls.items():
            await call()  # warm-up: plans, scripts, caches
            times = []
            for _ in range(ADMIN_CALLS):
                t0 = time.perf_counter()
                await call()
                times.append((time.perf_counter() - t0) * 1000)
            self.result[f"{name}{suffix}_ms"] = statistics.median(times)
            self.result[f"{name}{suffix}_max_ms"] = max(times)
        overview = await admin.overview()
        page = await admin.runs(limit=50)
        self.result["seen_queued"] = overview.queued
        self.result["seen_runs"] = page.total

    async def purge_while_claiming(self, queue: Queue, cutoff: float) -> None:
        self.started_at.clear()
        self.hundred_started.clear()
        self.claims.clear()
        self.timed_claims(queue)
        worker = Worker(queue, [("noop", self.noop)], concurrency=100, retention_s=None)
        task = asyncio.create_task(worker.start())
        await self.hundred_started.wait()  # the worker is claiming
        # The same worker's claims just before the purge: what a claim takes without it.
        baseline_t = time.perf_counter()
        await asyncio.sleep(BASELINE_S)
        baseline = [length for start, length in self.claims if start >= baseline_t]
        command = [sys.executable, __file__, "--purge-child", self.url, str(cutoff)]
        t0 = time.perf_counter()
        child = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        out, _ = await child.communicate()
        t1 = time.perf_counter()
        ran = sum(1 for t in self.started_at if t0 <= t <= t1)
        await worker.stop()
        await task
        purge = json.loads(out.decode().strip().splitlines()[-1])
        starts = [t for t in self.started_at if t0 <= t <= t1]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        during = [length for start, length in self.claims if t0 <= start <= t1]
        self.result.update(
            purge_s=t1 - t0,
            purged=purge["deleted"],
            purge_batch_max_ms=purge["batch_max_ms"],
            purge_jobs_run=ran,
            purge_claims=len(during),
            purge_claim_max_ms=max(during) * 1000 if during else None,
            baseline_claim_max_ms=max(baseline) * 1000 if baseline else None,
            purge_claim_p50_ms=statistics.median(during) * 1000 if during else None,
            purge_start_gap_max_ms=max(gaps) * 1000 if gaps else None,
            purge_ran_dry=ran < 100 or len(self.started_at) >= self.n,
        )

    async def drop(self, queue: Queue) -> None:
        """Delete what the case stored (a SQLite file goes whole: deleting its million
        rows one by one took minutes)."""
        if self.backend != "sqlite":
            with contextlib.suppress(Exception):
                await queue.backend.drop()
        await queue.disconnect()
        remove_files(self.workdir, self.token)

    async def run(self) -> dict[str, Any]:
        queue = self.queue()
        await queue.connect()
        try:
            log(f"{self.backend} N={self.n:,}: bulk enqueue")
            server_cpu = await self.server_cpu_begin()
            self.result["enqueue_rate"] = await self.enqueue(queue)
            used = await server_cpu()
            self.result["enqueue_server_cpu_ms"] = (
                used / self.n * 1000 if used is not None else None
            )
            log(f"{self.backend} N={self.n:,}: drain ({self.result['enqueue_rate']:,.0f}/s)")
            await self.drain(queue)
            cutoff = time.time()
            log(f"{self.backend} N={self.n:,}: drained at {self.result['drain_rate']:,.0f}/s")
            await self.sizes(queue)
            before = await self.args.redis_server.used_memory() if self.backend == "redis" else 0
            self.result["enqueue_again_rate"] = await self.enqueue(queue)
            if self.backend == "redis":
                after = await self.args.redis_server.used_memory()
                self.result["redis_bytes_per_waiting_job"] = (after - before) / self.n
            log(f"{self.backend} N={self.n:,}: admin pages")
            await self.admin_pages(queue)
            if self.backend == "postgres":
                log(f"{self.backend} N={self.n:,}: admin pages after VACUUM (ANALYZE)")
                await self.vacuum()
                await self.admin_pages(queue, "_vacuumed")
            log(f"{self.backend} N={self.n:,}: purge while claiming")
            await self.purge_while_claiming(queue, cutoff)
            log(f"{self.backend} N={self.n:,}: done")
        finally:
            await self.drop(queue)
        return self.result


async def drain_pairs(
    args: argparse.Namespace, backend: str, n: int, workdir: Path
) -> dict[str, Any]:
    """The drain rate over ``slice`` jobs from a queue of ``slice`` and from one of ``n``,
    taking turns ``rounds`` times (a change in the machine's load hits both sides)."""
    small, big = Case(args, backend, args.slice, workdir), Case(args, backend, n, workdir)
    small_queue, big_queue = small.queue(), big.queue()
    await small_queue.connect()
    await big_queue.connect()
    rates: dict[str, list[float]] = {"small": [], "big": []}
    try:
        log(f"{backend}: {n:,} jobs for the drain pairs")
        await big.enqueue(big_queue)
        for round_ in range(args.rounds):
            await small.enqueue(small_queue)
            rates["small"].append(await small.slice_rate(small_queue))
            rates["big"].append(await big.slice_rate(big_queue))
            log(
                f"{backend} round {round_ + 1}: {rates['small'][-1]:,.0f} / {rates['big'][-1]:,.0f}"
            )
    finally:
        for case, queue in ((small, small_queue), (big, big_queue)):
            await case.drop(queue)
    ratios = [b / a for a, b in zip(rates["small"], rates["big"], strict=True)]
    return {
        "kind": "drain_pairs",
        "backend": backend,
        "n": n,
        "slice": args.slice,
        "small_rates": rates["small"],
        "big_rates": rates["big"],
        "small_rate": statistics.median(rates["small"]),
        "big_rate": statistics.median(rates["big"]),
        "ratio": statistics.median(ratios),
        "load": os.getloadavg()[0],
    }


async def seed_runs(case: Case, n: int) -> None:
    """Store ``n`` complete runs of the last hours straight into the case's tables (a
    drain takes minutes to make a million)."""
    now = int(time.time() * 1000)
    if case.backend == "postgres":
        import psycopg

        async with await psycopg.AsyncConnection.connect(case.args.pg_url) as conn:
            await conn.execute(
                f'INSERT INTO "{case.token}".runs (queue, key, function, attempt, status, '
                "started_ms, finished_ms) SELECT 'scale', md5(g::text), 'noop', 1, 'complete', "
                "%s - g * 10, %s - g * 10 + 1 FROM generate_series(1, %s) AS g",
                (now, now, n),
            )
        return
    import sqlite3

    conn = sqlite3.connect(case.url.removeprefix("sqlite:///"))
    with conn:
        conn.execute(
            "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?) "
            "INSERT INTO runs (queue, key, function, attempt, status, started_ms, finished_ms) "
            "SELECT 'scale', lower(hex(randomblob(16))), 'noop', 1, 'complete', ? - i * 10, "
            "? - i * 10 + 1 FROM g",
            (n, now, now),
        )
    conn.close()


async def admin_seeded(
    args: argparse.Namespace, backend: str, n: int, workdir: Path
) -> dict[str, Any]:
    """Only the admin pages, over ``n`` waiting jobs (enqueued) and ``n`` runs (stored by
    SQL): minutes instead of the drain's hour, so that two versions can take turns."""
    case = Case(args, backend, n, workdir)
    case.result["kind"] = "admin_seeded"
    queue = case.queue()
    await queue.connect()
    try:
        log(f"{backend} N={n:,}: seeding")
        await seed_runs(case, n)
        await case.enqueue(queue)
        log(f"{backend} N={n:,}: admin pages")
        await case.admin_pages(queue)
        if backend == "postgres":
            await case.vacuum()
            await case.admin_pages(queue, "_vacuumed")
    finally:
        await case.drop(queue)
    case.result["load"] = os.getloadavg()[0]
    return case.result


async def purge_child(url: str, cutoff: float, batch: int = PURGE_BATCH) -> None:
    """The purge process: delete every run that started before ``cutoff``, in batches."""
    queue = Queue.from_url(url, name="scale")
    await queue.connect()
    backend = queue.backend
    purge = backend.purge_runs
    longest = 0.0

    async def timed(before_ms: int, limit: int) -> int:
        nonlocal longest
        t0 = time.perf_counter()
        try:
            return await purge(before_ms, limit)
        finally:
            longest = max(longest, time.perf_counter() - t0)

    backend.purge_runs = timed  # type: ignore[method-assign]
    try:
        deleted = await purge_runs_older_than(backend, 0, now=cutoff, batch=batch)
    finally:
        await queue.disconnect()
    print(json.dumps({"deleted": deleted, "batch_max_ms": longest * 1000}), flush=True)


# The table


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _cpu(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _mib(value: float) -> str:
    return f"{value / 1048576:,.0f}"


def pairs_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| backend | waiting jobs | drain c=100 over 10k jobs, queue of 10k (jobs/s) "
        "| same, queue of N (jobs/s) | ratio (median of the rounds) | rounds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['n']:,} | {r['small_rate']:,.0f} | {r['big_rate']:,.0f} "
            f"| {r['ratio']:.2f} | {len(r['small_rates'])} |"
        )
    return lines


def table(results: list[dict[str, Any]]) -> str:
    """The results as Markdown tables (one row per backend and size)."""
    pairs = [r for r in results if r.get("kind") == "drain_pairs"]
    seeded = [r for r in results if r.get("kind") == "admin_seeded"]
    results = [r for r in results if "kind" not in r]
    extra = (pairs_table(pairs) if pairs else []) + (seeded_table(seeded) if seeded else [])
    if not results:
        return "\n".join(extra)
    lines = [
        "| backend | N | bulk enqueue (jobs/s) | drain c=100, first 10k (jobs/s) | whole drain "
        "(jobs/s) | worker CPU/job (ms) | server CPU/job (ms) | overview (ms) | chart (ms) "
        "| runs page (ms) | info() (ms) | purge of N runs (s) | longest purge batch (ms) "
        "| longest claim during purge (ms) | longest claim before it (ms) "
        "| longest gap between job starts (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['n']:,} | {r['enqueue_rate']:,.0f} | "
            f"{r['drain_slice_rate']:,.0f} | {r['drain_rate']:,.0f} | {r['worker_cpu_ms']:.3f} | "
            f"{_cpu(r.get('server_cpu_ms'))} | "
            f"{_ms(r['overview_ms'])} | {_ms(r['chart_ms'])} | {_ms(r['runs_ms'])} | "
            f"{_ms(r['info_ms'])} | {r['purge_s']:,.1f} | {_ms(r['purge_batch_max_ms'])} | "
            f"{_ms(r['purge_claim_max_ms'])} | {_ms(r.get('baseline_claim_max_ms'))} | "
            f"{_ms(r['purge_start_gap_max_ms'])} |"
        )
    vacuumed = [r for r in results if "overview_vacuumed_ms" in r]
    if vacuumed:
        lines += [
            "",
            "| backend | N | after VACUUM (ANALYZE): overview (ms) | chart (ms) | runs page (ms) "
            "| info() (ms) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in vacuumed:
            lines.append(
                f"| {r['backend']} | {r['n']:,} | {_ms(r['overview_vacuumed_ms'])} | "
                f"{_ms(r['chart_vacuumed_ms'])} | {_ms(r['runs_vacuumed_ms'])} | "
                f"{_ms(r['info_vacuumed_ms'])} |"
            )
    sizes = [r for r in results if r["backend"] != "redis"]
    redis = [r for r in results if r["backend"] == "redis"]
    if sizes:
        lines += [
            "",
            "| backend | N | storage after N jobs churned through (MiB) |",
            "|---|---:|---|",
        ]
        for r in sizes:
            if "pg_sizes" in r:
                parts = ", ".join(
                    f"{name} {_mib(t)} + {_mib(i)} index"
                    for name, (t, i) in sorted(r["pg_sizes"].items())
                    if t + i > 1048576
                )
                text = f"tables + indexes: {parts}"
            else:
                text = f"database file {_mib(r['sqlite_bytes'])}"
            lines.append(f"| {r['backend']} | {r['n']:,} | {text} |")
    if redis:
        lines += [
            "",
            "| N | Redis memory per waiting job (bytes) | used_memory after N churned (MiB) |",
            "|---:|---:|---:|",
        ]
        for r in redis:
            lines.append(
                f"| {r['n']:,} | {r['redis_bytes_per_waiting_job']:,.0f} | "
                f"{_mib(r['redis_used_after_churn'])} |"
            )
    if extra:
        lines += ["", *extra]
    return "\n".join(lines)


def seeded_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| backend | waiting jobs and runs | overview (ms) | chart (ms) | runs page (ms) "
        "| info() (ms) | after VACUUM: overview / chart / runs / info() (ms) | load |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        vacuumed = (
            " / ".join(
                _ms(r[f"{name}_vacuumed_ms"]) for name in ("overview", "chart", "runs", "info")
            )
            if "overview_vacuumed_ms" in r
            else "–"
        )
        lines.append(
            f"| {r['backend']} | {r['n']:,} | {_ms(r['overview_ms'])} | {_ms(r['chart_ms'])} "
            f"| {_ms(r['runs_ms'])} | {_ms(r['info_ms'])} | {vacuumed} | {r['load']:.1f} |"
        )
    return lines


async def main(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    if args.admin_seeded and "redis" in backends:
        raise SystemExit("--admin-seeded stores runs by SQL: use --backends postgres,sqlite")
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-scale-", dir=args.workdir))
    args.redis_server = RedisServer(workdir) if "redis" in backends else None
    results = []
    try:
        if args.redis_server:
            await args.redis_server.wait_ready()
        log(f"load average {os.getloadavg()[0]:.2f}; sizes {sizes}; backends {backends}")
        for n in sizes:
            for backend in backends:
                if args.admin_seeded:
                    result = await admin_seeded(args, backend, n, workdir)
                elif args.drain_pairs:
                    result = await drain_pairs(args, backend, n, workdir)
                else:
                    result = await Case(args, backend, n, workdir).run()
                result["load"] = os.getloadavg()[0]
                results.append(result)
                if args.out:
                    with open(args.out, "a") as out:
                        out.write(json.dumps(result) + "\n")
                log(json.dumps(result))
    finally:
        if args.redis_server:
            args.redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(results))


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--purge-child":
        batch = int(sys.argv[4]) if len(sys.argv) == 5 else PURGE_BATCH
        asyncio.run(purge_child(sys.argv[2], float(sys.argv[3]), batch))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--backends", default="sqlite,redis,postgres")
    parser.add_argument("--slice", type=int, default=10_000, help="jobs the drain rate is over")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--workdir", default=None, help="where SQLite files go (default /tmp)")
    parser.add_argument("--out", help="append each case's figures to this file (JSON lines)")
    parser.add_argument(
        "--drain-pairs",
        action="store_true",
        help="only the drain rate: a queue of --slice jobs and one of N, taking turns",
    )
    parser.add_argument(
        "--admin-seeded",
        action="store_true",
        help="only the admin pages, over N enqueued jobs and N runs stored by SQL",
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns of --drain-pairs")
    parser.add_argument("--table", nargs="*", help="print the table of saved JSON-lines files")
    parsed = parser.parse_args()
    if parsed.table:
        lines = [line for f in parsed.table for line in Path(f).read_text().splitlines()]
        saved = [json.loads(line) for line in lines if line.strip()]
        print(table(saved))
    else:
        asyncio.run(main(parsed))
