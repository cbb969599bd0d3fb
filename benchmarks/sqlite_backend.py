"""SQLite backend: claim+finish throughput by batch size, and cross-process wake-up latency.

Run: ``python benchmarks/sqlite_backend.py [--jobs 5000] [--events 60]``. Prints numbers;
asserts nothing. Throughput: a backlog of jobs with ~400-byte payloads is drained by one
backend calling ``claim(limit=B)`` then ``finish`` of the whole batch, as a worker does.
Wake-up: another process enqueues one job at random moments; an idle backend blocked in
``wait_for_work`` (woken by the poll alone, or by datagrams too: ``wakeup=socket``) claims it; the latency is from just before ``enqueue`` in the producer to
just after ``claim`` returned in the consumer (same host, same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from conveyor.backends.base import NewJob, RunEnd, Transition
from conveyor.backends.sqlite import SQLiteBackend

PAYLOAD = '{"function":"task","kwargs":{"x":' + "1" * 340 + '},"timeout":10,"retries":1}'

PRODUCER = """
import asyncio, random, sys, time
from conveyor.backends.base import NewJob
from conveyor.backends.sqlite import SQLiteBackend

async def main(url, events):
    backend = SQLiteBackend.from_url(url, "wake")
    await backend.connect()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(events):
        await asyncio.sleep(random.uniform(0.08, 0.2))
        await backend.enqueue([NewJob(f"e{i}", "f", repr(time.time()))])
    await backend.disconnect()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def throughput(directory: Path, jobs: int, batch: int) -> float:
    """Jobs per second drained with claim(limit=batch) + finish(batch)."""
    backend = SQLiteBackend.from_url(f"sqlite:///{directory / f'tp-{batch}.db'}", "bench")
    await backend.connect()
    for start in range(0, jobs, 500):
        chunk = range(start, min(start + 500, jobs))
        await backend.enqueue([NewJob(f"j{i}", "task", PAYLOAD) for i in chunk])
    done = 0
    started = time.perf_counter()
    while done < jobs:
        rows = await backend.claim("bench", batch, 60, time.time())
        finished_ms = int(time.time() * 1000)
        await backend.finish(
            [
                Transition(
                    key=row.key,
                    payload=PAYLOAD,
                    status="complete",
                    expire_at=time.time() + 600,
                    run=RunEnd(row.run_id or "", "complete", finished_ms, b'{"result":1}'),
                )
                for row in rows
            ]
        )
        done += len(rows)
    elapsed = time.perf_counter() - started
    await backend.disconnect()
    return jobs / elapsed


async def wake_latency(
    directory: Path, events: int, poll_interval: float, wakeup: str
) -> list[float]:
    """Milliseconds from another process's enqueue to this process's claim, per event."""
    name = f"wake-{wakeup}-{poll_interval}.db"
    url = f"sqlite:///{directory / name}?poll_interval={poll_interval}&wakeup={wakeup}"
    backend = SQLiteBackend.from_url(url, "wake")
    await backend.connect()
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PRODUCER,
        url,
        str(events),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert producer.stdin is not None and producer.stdout is not None
    assert (await producer.stdout.readline()).strip() == b"ready"
    producer.stdin.write(b"go\n")
    await producer.stdin.drain()
    latencies: list[float] = []
    cpu_started = time.process_time()
    wall_started = time.perf_counter()
    while len(latencies) < events:
        await backend.wait_for_work(5.0)
        for row in await backend.claim("bench", 10, 60, time.time()):
            latencies.append((time.time() - float(row.payload)) * 1000)
    cpu = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
    await producer.wait()
    await backend.disconnect()
    print(f"    consumer CPU while mostly idle: {cpu * 100:.1f} % of one core")
    return latencies


async def idle_cpu(
    directory: Path, poll_interval: float, wakeup: str, seconds: float = 3.0
) -> float:
    """Share of one core used by a backend waiting for work that never comes."""
    url = f"sqlite:///{directory / 'idle.db'}?poll_interval={poll_interval}&wakeup={wakeup}"
    backend = SQLiteBackend.from_url(url, "idle")
    await backend.connect()
    await backend.wait_for_work(0.1)
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    await backend.wait_for_work(seconds)
    share = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
    await backend.disconnect()
    return share


async def main() -> None:
    """Run every measurement and print the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--events", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(f"claim+finish throughput, {args.jobs} jobs, one backend:")
        for batch in (1, 10, 100):
            rate = await throughput(directory, args.jobs, batch)
            print(f"  batch {batch:>3}: {rate:>8.0f} jobs/s")
        for wakeup, interval in (("poll", 0.02), ("poll", 0.05), ("socket", 0.02)):
            print(
                f"wake-up {wakeup}, poll_interval={interval * 1000:.0f} ms, {args.events} events:"
            )
            lat = sorted(await wake_latency(directory, args.events, interval, wakeup))
            p95 = lat[int(len(lat) * 0.95) - 1]
            print(
                f"    enqueue -> claim: p50 {statistics.median(lat):.1f} ms, "
                f"p95 {p95:.1f} ms, max {lat[-1]:.1f} ms"
            )
            share = await idle_cpu(directory, interval, wakeup)
            print(f"    idle waiter CPU: {share * 100:.2f} % of one core")


if __name__ == "__main__":
    asyncio.run(main())
