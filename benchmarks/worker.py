"""The worker process: one library's own worker, measured from the inside.

Run by ``driver.py``, never by hand. Two modes:

* ``--target N`` (drain): start the worker on a queue the driver has filled, and report the
  wall time and this process's CPU time from the start until the N-th job's outcome is
  stored (or until ``--time-cap`` seconds, with the count done by then); then stop.
* no target (serve): start the worker, report the idle RSS after a second, then run what
  the driver enqueues (pickup jobs, the 100 hold jobs) until "stop" arrives on stdin.

Events go to stdout as JSON lines (see :func:`probe.emit`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import sys
import time

import probe
from adapters import Target, adapter_class


async def drain(
    adapter: object, concurrency: int, target: int, time_cap: float, profile: str | None
) -> None:
    probe.PROBE.target = target
    # CPU time, not wall time: waiting for the server is not what we look for.
    profiler = cProfile.Profile(time.process_time) if profile else None
    await adapter.prepare_worker(concurrency)  # type: ignore[attr-defined]
    cpu0 = probe.cpu_seconds()
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    await adapter.start_worker()  # type: ignore[attr-defined]
    capped = False
    try:
        await asyncio.wait_for(probe.PROBE.all_done.wait(), time_cap)
        t_done = probe.PROBE.t_done
        await adapter.settle()  # type: ignore[attr-defined]
    except TimeoutError:
        # Too slow to finish within the cap: its rate is measured over the cap.
        capped = True
        t_done = time.perf_counter()
    jobs = probe.PROBE.finished
    t_end = time.perf_counter()
    cpu = probe.cpu_seconds() - cpu0
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    probe.emit(
        "result",
        wall_s=t_end - t0,
        bodies_wall_s=t_done - t0,
        cpu_s=cpu,
        jobs=jobs,
        capped=capped,
        rss_kib=probe.rss_kib(),
    )
    await adapter.stop_worker()  # type: ignore[attr-defined]


async def serve(adapter: object, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await adapter.prepare_worker(concurrency)  # type: ignore[attr-defined]
    await adapter.start_worker()  # type: ignore[attr-defined]
    await asyncio.sleep(1.0)
    probe.emit("ready", idle_rss_kib=probe.rss_kib())
    while True:
        line = await reader.readline()
        if not line or line.strip() == b"stop":
            break
    await adapter.stop_worker()  # type: ignore[attr-defined]
    probe.emit("stopped", jobs=probe.PROBE.finished)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("library")
    parser.add_argument("--token", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--pg-dsn", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--target", type=int)
    parser.add_argument("--time-cap", type=float, default=1e9)
    parser.add_argument("--profile")
    args = parser.parse_args()
    target = Target(args.token, args.redis_url, args.pg_dsn, args.workdir)
    adapter = adapter_class(args.library)(target)
    if args.target:
        await drain(adapter, args.concurrency, args.target, args.time_cap, args.profile)
    else:
        await serve(adapter, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
