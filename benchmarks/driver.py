"""One measurement of one library: the client side, and the worker process it starts.

Run by ``run.py``, which reads the last stdout line (a JSON object). Usage::

    driver.py LIBRARY WORKLOAD --n N [--concurrency C] [--kind noop|sleep] ...

Workloads:

* ``enqueue``: N single enqueues, one awaited after the other (or as many as fit in the
  time cap).
* ``bulk``: N jobs in one call of the library's bulk API (``na`` when it has none).
* ``drain``: fill the queue with N jobs (not timed), then start a worker process at
  concurrency C and let it report its wall and CPU time until all N are done (or, for a
  library too slow to finish within the time cap, how many it did by then).
* ``pickup``: an idle worker; enqueue one job, wait until it starts, repeat N times (or
  until the time cap); latencies are enqueue-to-start.
* ``memory``: the worker's RSS when idle, and while 100 jobs run at once.

Every key, row, schema or file the measurement created is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import probe
from adapters import Adapter, Target, adapter_class

HERE = Path(__file__).resolve().parent


class WorkerProcess:
    """The worker subprocess and its event stream."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: str) -> None:
        self.proc = proc
        self.log_path = log_path

    @classmethod
    async def start(cls, args: argparse.Namespace, concurrency: int, extra: list[str]) -> Any:
        log = open(args.log, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "worker.py"),
                args.library,
                "--token",
                args.token,
                "--redis-url",
                args.redis_url,
                "--pg-dsn",
                args.pg_dsn,
                "--workdir",
                args.workdir,
                "--concurrency",
                str(concurrency),
                *extra,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=1 << 20,
            )
        finally:
            log.close()
        return cls(proc, args.log)

    async def event(self, name: str, timeout: float) -> dict[str, Any]:
        """The next event called ``name`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the worker sent no {name!r} event within {timeout:.0f}s")
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except TimeoutError:
                raise TimeoutError(
                    f"the worker sent no {name!r} event within {timeout:.0f}s"
                ) from None
            if not line:
                await self.proc.wait()
                raise RuntimeError(
                    f"the worker exited (code {self.proc.returncode}) before {name!r}: "
                    f"{_tail(self.log_path)}"
                )
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a library printing on stdout
            if data.get("event") == name:
                return data  # type: ignore[no-any-return]

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def finish(self, timeout: float = 30) -> None:
        """Wait for the process to exit; kill it if it does not."""
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


def _tail(path: str, lines: int = 6) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])


class ClientProfile:
    """cProfile (CPU timer) around the timed part of a client workload, if asked for."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.profiler = cProfile.Profile(time.process_time) if path else None

    def __enter__(self) -> None:
        if self.profiler:
            self.profiler.enable()

    def __exit__(self, *exc: object) -> None:
        if self.profiler and self.path:
            self.profiler.disable()
            self.profiler.dump_stats(self.path)


async def measure_enqueue(
    adapter: Adapter, n: int, time_cap: float, profile: str | None = None
) -> dict[str, Any]:
    for _ in range(20):  # warm up connections and scripts
        await adapter.enqueue("noop")
    profiler = ClientProfile(profile)
    profiler.__enter__()
    cpu0, t0 = probe.cpu_seconds(), time.perf_counter()
    deadline = t0 + time_cap
    done = 0
    while done < n:
        await adapter.enqueue("noop")
        done += 1
        if done % 100 == 0 and time.perf_counter() > deadline:
            break
    wall, cpu = time.perf_counter() - t0, probe.cpu_seconds() - cpu0
    profiler.__exit__()
    return {
        "rate": done / wall,
        "wall_s": wall,
        "client_cpu_ms": cpu / done * 1000,
        "jobs": done,
        "capped": done < n,
    }


async def measure_bulk(adapter: Adapter, n: int, profile: str | None = None) -> dict[str, Any]:
    if not adapter.bulk_api:
        return {"na": True}
    await adapter.enqueue_bulk("noop", [{}] * 20)
    kwargs: list[dict[str, Any]] = [{} for _ in range(n)]
    with ClientProfile(profile):
        cpu0, t0 = probe.cpu_seconds(), time.perf_counter()
        await adapter.enqueue_bulk("noop", kwargs)
        wall, cpu = time.perf_counter() - t0, probe.cpu_seconds() - cpu0
    return {"rate": n / wall, "wall_s": wall, "client_cpu_ms": cpu / n * 1000}


async def measure_drain(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    await adapter.fill(args.kind, args.n)
    extra = ["--target", str(args.n), "--time-cap", str(args.time_cap)]
    if args.profile:
        extra += ["--profile", args.profile]
    worker = await WorkerProcess.start(args, args.concurrency, extra)
    try:
        result = await worker.event("result", args.timeout)
    finally:
        await worker.finish()
    jobs = max(result["jobs"], 1)
    return {
        "rate": jobs / result["wall_s"],
        "wall_s": result["wall_s"],
        "bodies_wall_s": result["bodies_wall_s"],
        "cpu_ms": result["cpu_s"] / jobs * 1000,
        "jobs": result["jobs"],
        "capped": result["capped"],
        "rss_kib": result["rss_kib"],
    }


async def measure_pickup(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    worker = await WorkerProcess.start(args, 10, [])
    latencies: list[float] = []
    deadline = float("inf")
    try:
        await worker.event("ready", 60)
        for i in range(args.n + 3):
            if latencies and time.monotonic() > deadline:
                break
            await adapter.enqueue("pickup", t=time.time())
            event = await worker.event("picked", 30)
            if i == 2:
                deadline = time.monotonic() + args.time_cap
            if i >= 3:  # the first three warm the path up
                latencies.append(event["latency_ms"])
            await asyncio.sleep(0.005)  # let the worker go idle again
        await worker.send("stop")
        await worker.event("stopped", 30)
    finally:
        await worker.finish()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    return {"count": len(latencies), "p50": pct(50), "p95": pct(95), "p99": pct(99)}


async def measure_memory(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    worker = await WorkerProcess.start(args, 100, [])
    try:
        ready = await worker.event("ready", 60)
        await adapter.fill("hold", 100)
        busy = await worker.event("busy_rss", 60)
        await worker.send("stop")
        await worker.event("stopped", 60)
    finally:
        await worker.finish()
    return {
        "idle_mib": ready["idle_rss_kib"] / 1024,
        "busy_mib": busy["rss_kib"] / 1024,
        "running": busy["running"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("library")
    parser.add_argument("workload", choices=["enqueue", "bulk", "drain", "pickup", "memory"])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--kind", default="noop", choices=["noop", "sleep"])
    parser.add_argument("--time-cap", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--workdir", default="/tmp")
    parser.add_argument("--log", default=os.devnull)
    parser.add_argument("--profile", help="write a cProfile dump of the timed part here")
    parser.add_argument("--token", help="the name of everything created (default: random)")
    args = parser.parse_args()
    args.token = args.token or f"bench_{uuid.uuid4().hex[:10]}"
    target = Target(args.token, args.redis_url, args.pg_dsn, args.workdir)
    out: dict[str, Any] = {"library": args.library, "workload": args.workload}
    adapter: Adapter | None = None
    opened = False
    try:
        adapter = adapter_class(args.library)(target)
        await adapter.open()
        opened = True
        if args.workload == "enqueue":
            out.update(await measure_enqueue(adapter, args.n, args.time_cap, args.profile))
        elif args.workload == "bulk":
            out.update(await measure_bulk(adapter, args.n, args.profile))
        elif args.workload == "drain":
            out.update(await measure_drain(adapter, args))
        elif args.workload == "pickup":
            out.update(await measure_pickup(adapter, args))
        else:
            out.update(await measure_memory(adapter, args))
        out["ok"] = True
    except BaseException as exc:
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        with open(args.log, "a") as log:
            log.write(traceback.format_exc())
    finally:
        if adapter is not None:
            if opened:
                with contextlib.suppress(Exception):
                    await adapter.close()
            try:
                await adapter.cleanup()
            except Exception as exc:
                out["cleanup_error"] = f"{type(exc).__name__}: {exc}"[:300]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
