"""What per-run log capture costs: drain throughput with capture on and off.

Each job logs one INFO line (the issue's workload). One worker process drains N queued jobs
at concurrency 100. Per backend, one untimed drain warms up first; then capture off and on
take turns, the order swapping every round (off-on, on-off, ...) so that neither side always
runs first, with a garbage collection before each drain. The throughputs are the medians of
the rounds; the cost is the median of each round's own cost (its off and on drains ran
back to back, so a burst of load from other processes hits both or neither). Prints a
table; asserts nothing. The machine should be otherwise idle (take
``flock /tmp/bench.lock`` when others benchmark on it too).

    .venv/bin/python benchmarks/log_capture.py [--n 10000] [--runs 5] [--backends memory,sqlite,redis,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from conveyor import Job, Queue, Worker

logger = logging.getLogger("bench.job")


async def one_line(ctx: dict[str, object]) -> None:
    """The job: one INFO line, as a typical task logs."""
    logger.info("processed %s", ctx["job"].key)  # type: ignore[attr-defined]


def _url(kind: str, directory: Path) -> str:
    token = uuid.uuid4().hex[:8]
    return {
        "memory": "memory://",
        "sqlite": f"sqlite:///{directory / f'logs-{token}.db'}",
        "redis": f"redis://127.0.0.1:6379/0?prefix=bench-logs-{token}",
        "postgres": f"postgresql://postgres@127.0.0.1:5432/test?schema=bench_logs_{token}",
    }[kind]


async def drain(kind: str, n: int, capture: bool, directory: Path) -> float:
    """Jobs per second for one drain."""
    queue = Queue.from_url(_url(kind, directory), name="logs")
    await queue.connect()
    try:
        for start in range(0, n, 1000):
            await queue.enqueue_many([Job("one_line") for _ in range(min(1000, n - start))])
        worker = Worker(
            queue, [one_line], concurrency=100, burst=True, capture_logs=capture, retention_s=None
        )
        began = time.perf_counter()
        await worker.start()
        return n / (time.perf_counter() - began)
    finally:
        await queue.backend.drop()
        await queue.disconnect()


async def main(args: argparse.Namespace) -> None:
    """Run the measurements and print the table."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.backends.split(","):
            rates: dict[bool, list[float]] = {True: [], False: []}
            await drain(kind, min(args.n, 2000), True, Path(tmp))  # warm-up, not counted
            for round_ in range(args.runs):
                for capture in (False, True) if round_ % 2 == 0 else (True, False):
                    gc.collect()
                    rates[capture].append(await drain(kind, args.n, capture, Path(tmp)))
            off, on = statistics.median(rates[False]), statistics.median(rates[True])
            costs = [(a - b) / a * 100 for a, b in zip(rates[False], rates[True], strict=True)]
            rows.append((kind, off, on, statistics.median(costs)))
    print(f"\nDrain of {args.n:,} jobs, one INFO line each, c=100, median of {args.runs} rounds\n")
    print("| backend | capture off (jobs/s) | capture on (jobs/s) | cost |")
    print("|---|---:|---:|---:|")
    for kind, off, on, cost in rows:
        print(f"| {kind} | {off:,.0f} | {on:,.0f} | {cost:.1f}% |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", default="memory,sqlite,redis,postgres")
    # Records are made either way (the root logger at INFO, with a handler that drops
    # them), so the difference is the capture itself, not the cost of logging at all.
    logging.basicConfig(level=logging.INFO, handlers=[logging.NullHandler()])
    asyncio.run(main(parser.parse_args()))
