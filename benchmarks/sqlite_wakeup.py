"""SQLite pickup latency: an idle worker process woken by datagrams, or by the poll alone.

Run: ``.venv/bin/python benchmarks/sqlite_wakeup.py [--jobs 500] [--rounds 3]`` (the
project's venv; no server needed). Prints a table; asserts nothing.

The same workload as ``driver.py``'s ``pickup``: one worker process (``Worker``,
concurrency 10, defaults otherwise) waits on an SQLite file; this process enqueues one job,
waits until the job has started, pauses 5 ms, and repeats. A job's latency is
``time.time()`` at the start of its function (in the worker) minus ``time.time()`` just
before the ``enqueue`` call (here): the enqueue call is included, as in the main table. The
first three jobs of each measurement warm the path up and are not counted.

Each round measures ``wakeup=poll`` (the poll alone, every 20 ms: the backend before the
doorbell) and ``wakeup=socket`` (the default), in alternating order; the table gives the
percentiles over the jobs of all rounds, and the median CPU share of the idle worker (the
worker process's CPU time over 2 s with nothing to do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from conveyor.queue import Queue

WORKER = """
import asyncio, json, resource, sys, time
from conveyor.queue import Queue
from conveyor.worker import Worker

def emit(**event):
    print(json.dumps(event), flush=True)

async def pickup(ctx, *, t):
    emit(event="picked", latency_ms=(time.time() - t) * 1000)

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

async def main(url):
    queue = Queue.from_url(url, name="bench")
    worker = Worker(queue, [("pickup", pickup)], concurrency=10)
    task = asyncio.create_task(worker.start())
    emit(event="ready")
    loop = asyncio.get_running_loop()
    while (line := (await loop.run_in_executor(None, sys.stdin.readline)).strip()) != "stop":
        if line == "idle":
            started, wall = cpu(), time.perf_counter()
            await asyncio.sleep(2.0)
            emit(event="idle", share=(cpu() - started) / (time.perf_counter() - wall))
    await worker.stop()
    await task
    emit(event="stopped")

asyncio.run(main(sys.argv[1]))
"""


class WorkerProcess:
    """The worker subprocess and its JSON event lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str) -> WorkerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = cls(proc)
        await worker.event("ready")
        return worker

    async def event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"the worker exited before {name!r}")
            data: dict[str, Any] = json.loads(line)
            if data.get("event") == name:
                return data

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()


async def measure(directory: Path, wakeup: str, jobs: int, run: int) -> tuple[list[float], float]:
    """Pickup latencies (ms) of ``jobs`` jobs, and the idle worker's CPU share."""
    url = f"sqlite:///{directory / f'{wakeup}-{run}.db'}?wakeup={wakeup}"
    queue = Queue.from_url(url, name="bench")
    await queue.connect()
    worker = await WorkerProcess.start(url)
    latencies: list[float] = []
    try:
        for i in range(jobs + 3):
            await queue.enqueue("pickup", t=time.time())
            event = await worker.event("picked")
            if i >= 3:
                latencies.append(event["latency_ms"])
            await asyncio.sleep(0.005)  # let the worker go idle again
        await worker.send("idle")
        share = float((await worker.event("idle"))["share"])
        await worker.send("stop")
        await worker.event("stopped")
    finally:
        if worker.proc.returncode is None:
            worker.proc.kill()
        await worker.proc.wait()
        await queue.disconnect()
    return latencies, share


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=500, help="jobs per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    modes = ["poll", "socket"]
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    shares: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.rounds):
            for mode in modes if run % 2 == 0 else reversed(modes):
                values, share = await measure(Path(tmp), mode, args.jobs, run)
                latencies[mode].extend(values)
                shares[mode].append(share)
                print(
                    f"round {run + 1} {mode:>6}: p50 {percentile(values, 50):.2f} ms, "
                    f"p99 {percentile(values, 99):.2f} ms",
                    file=sys.stderr,
                )
    print(
        f"SQLite pickup latency, idle worker (concurrency 10), {args.rounds} rounds "
        f"x {args.jobs} jobs\n"
    )
    print("| wake-up | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | idle worker CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    names = {"poll": "poll only (`wakeup=poll`)", "socket": "datagram + poll (default)"}
    for mode in modes:
        values = latencies[mode]
        print(
            f"| {names[mode]} | {percentile(values, 50):.2f} | {percentile(values, 95):.2f} "
            f"| {percentile(values, 99):.2f} | {max(values):.2f} "
            f"| {statistics.median(shares[mode]) * 100:.1f}% |"
        )


if __name__ == "__main__":
    asyncio.run(main())
