"""Chaos: N jobs through worker processes that are killed, stalled and cut off from the backend.

For each backend (SQLite, Redis, PostgreSQL), three worker processes run N jobs of the test
task ``record`` (each attempt appends when it ran to a file). Meanwhile, in turn: a worker is
killed with SIGKILL (and a new one started), a worker is stalled with SIGSTOP for longer
than its lease and then resumed, and (Redis, PostgreSQL) every connection to the backend is
cut for longer than the leases. At the end it prints, per backend:

* **lost**: jobs not complete;
* **stored twice**: jobs with more than one completed run record (an outcome written over
  another's);
* **ran to the end twice**: jobs whose function reached its end in more than one attempt;
  **at once**: of those, attempts that overlapped in time;
* **recovery after SIGKILL**: from the kill to the killed worker's jobs running again.

Run it with the project's virtualenv, with Redis and PostgreSQL up::

    .venv/bin/python benchmarks/chaos.py            # N = 600, about a minute per backend
    .venv/bin/python benchmarks/chaos.py --n 2000 --backends redis

It is a benchmark, not a test: it prints what happened and never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from conveyor.backends.base import DetectsDeadOwners, RunFilter
from conveyor.job import Job, Status
from conveyor.queue import Queue
from conveyor.testing.backends import isolated_url, unreachable_reason
from conveyor.testing.faults import FaultProxy, WorkerProcess

LEASE_S = 2.0
WORKERS = 3
CONCURRENCY = 8


async def chaos_run(kind: str, n: int, seconds: float, directory: Path) -> dict[str, Any]:
    url = isolated_url(kind, directory)
    record_path = directory / f"attempts-{kind}.jsonl"
    queue = Queue.from_url(url, name="chaos")
    await queue.connect()
    proxy = FaultProxy.for_url(url).start() if kind in ("redis", "postgres") else None
    through = proxy.url(url) if proxy else url
    workers: list[WorkerProcess] = []
    kills: list[tuple[float, int]] = []  # (time, pid)
    faults: dict[str, int] = defaultdict(int)

    async def start_worker() -> None:
        worker = WorkerProcess(through, "chaos", lease_s=LEASE_S, concurrency=CONCURRENCY)
        await worker.start()
        workers.append(worker)

    try:
        for _ in range(WORKERS):
            await start_worker()
        keys = [f"job-{i}" for i in range(n)]
        rng = random.Random(7)
        for start in range(0, n, 200):
            await queue.enqueue_many(
                Job(
                    "record",
                    kwargs={"path": str(record_path), "seconds": rng.uniform(0.05, 0.4)},
                    key=key,
                    retries=5,
                    timeout=60,
                )
                for key in keys[start : start + 200]
            )
        began = time.monotonic()
        step = 0
        while time.monotonic() - began < seconds:
            step += 1
            action = ("kill", "stall", "cut")[step % (3 if proxy else 2)]
            live = [w for w in workers if w.alive]
            if action == "kill" and live:
                victim = rng.choice(live)
                kills.append((time.time(), victim.pid))
                victim.kill()
                faults["kill"] += 1
                await start_worker()
            elif action == "stall" and live:
                victim = rng.choice(live)
                victim.stall()
                await asyncio.sleep(LEASE_S * 1.5)
                victim.resume()
                faults["stall"] += 1
            elif action == "cut" and proxy is not None:
                proxy.cut()
                await asyncio.sleep(LEASE_S * 1.5)
                proxy.heal()
                faults["cut"] += 1
            await asyncio.sleep(1.0)
        done_by = time.monotonic() + 120
        while time.monotonic() < done_by:
            counts = await queue.backend.count([Status.COMPLETE.value])
            if counts[Status.COMPLETE.value] >= n:
                break
            await asyncio.sleep(0.5)
        return await _report(queue, kind, keys, record_path, kills, faults)
    finally:
        for worker in workers:
            with contextlib.suppress(Exception):
                if worker.alive:
                    worker.resume()
                    await worker.terminate(10)
        if proxy is not None:
            proxy.close()
        with contextlib.suppress(Exception):
            await queue.backend.drop()
        await queue.disconnect()


async def _report(
    queue: Queue,
    kind: str,
    keys: list[str],
    record_path: Path,
    kills: list[tuple[float, int]],
    faults: dict[str, int],
) -> dict[str, Any]:
    jobs = await queue.jobs(keys)
    lost = [k for k, job in zip(keys, jobs, strict=True) if job is None or job.status != "complete"]
    attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in record_path.read_text().splitlines():  # noqa: ASYNC240 - after the run
        entry = json.loads(line)
        attempts[entry["key"]].append(entry)
    twice = at_once = 0
    for entries in attempts.values():
        ended = sorted((e for e in entries if e["finished"]), key=lambda e: e["start"])
        if len(ended) > 1:
            twice += 1
            if any(b["start"] < a["end"] for a, b in itertools.pairwise(ended)):
                at_once += 1
    stored_twice = 0
    recoveries: list[float] = []
    kill_by_pid = {pid: at for at, pid in kills}
    for key in keys:
        runs, _ = await queue.backend.list_runs(RunFilter(key=key), 0, 50)
        if sum(run.status == "complete" for run in runs) > 1:
            stored_twice += 1
        runs.sort(key=lambda run: run.started_ms)
        for earlier, later in itertools.pairwise(runs):
            pid = _pid_of(earlier.worker_id)
            if pid in kill_by_pid and earlier.error == queue.swept_error_message:
                delay = later.started_ms / 1000 - kill_by_pid[pid]
                if delay >= 0:  # not a job it lost earlier, while it was stalled
                    recoveries.append(delay)
    return {
        "backend": kind,
        "jobs": len(keys),
        "faults": dict(faults),
        "lost": len(lost),
        "stored twice": stored_twice,
        "ran to the end twice": twice,
        "at once": at_once,
        "detects dead workers": isinstance(queue.backend, DetectsDeadOwners),
        "recovery p50 s": round(statistics.median(recoveries), 2) if recoveries else None,
        "recovery max s": round(max(recoveries), 2) if recoveries else None,
    }


def _pid_of(worker_id: str | None) -> int | None:
    # A worker's default id is host:pid:random.
    parts = (worker_id or "").split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=600, help="jobs per backend")
    parser.add_argument("--seconds", type=float, default=30, help="how long faults go on")
    parser.add_argument("--backends", nargs="*", default=["sqlite", "redis", "postgres"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.backends:
            reason = unreachable_reason(kind)
            if reason:
                print(f"{kind}: skipped ({reason})")
                continue
            print(f"{kind}: {args.n} jobs, {WORKERS} workers, faults for {args.seconds:g}s ...")
            rows.append(await chaos_run(kind, args.n, args.seconds, Path(tmp)))
    if rows:
        print(_table(rows))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
