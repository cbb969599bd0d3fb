"""Where the time of one awaited Redis enqueue goes: a floor, the scripts, the client.

Each row runs N sequential calls, each awaited before the next, as the "enqueue 1 by 1"
workload does, and reports the wall time per call, the client's CPU time per call
(``getrusage``: user and system) and the server's time per script call (from the
difference of ``INFO commandstats`` before and after, so the server's statistics are not
reset). Rows:

- ``floor``: a minimal asyncio protocol (hiredis parser, no redis-py) calling a script that
  returns 1, with the same KEYS and arguments as Conveyor's enqueue: what any asyncio
  client pays for one round trip on this machine.
- ``saq script``: the same minimal client calling SAQ's enqueue script (its text, as SAQ
  0.26 sends it, written here): the server's share of SAQ's enqueue.
- ``conveyor script``: the same minimal client calling Conveyor's ``enqueue`` function (the
  library the backend loads on Redis 7+; ``conveyor evalsha``: the same script by
  ``EVALSHA``, as on older servers).
- ``conveyor enqueue``: ``await queue.enqueue("noop")``, everything included.

Rows take turns for ``--runs`` rounds; each figure is the median over rounds. Every key
is under a random prefix and deleted at the end. Asserts nothing; run it on an otherwise
idle machine (``flock /tmp/bench.lock``) with the project's venv:

    .venv/bin/python benchmarks/roundtrip.py [--n 5000] [--runs 5] [--redis-url redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

import hiredis
from redis.asyncio import Redis

from conveyor import Queue
from conveyor.backends.redis.scripts import library, sources

SAQ_SCRIPT = """
if not redis.call('ZSCORE', KEYS[1], KEYS[2]) and redis.call('EXISTS', KEYS[4]) == 0 then
    redis.call('SET', KEYS[2], ARGV[1])
    redis.call('ZADD', KEYS[1], ARGV[2], KEYS[2])
    if ARGV[2] == '0' then redis.call('RPUSH', KEYS[3], KEYS[2]) end
    return 1
end
return nil
"""


def frame(*args: str | bytes | int) -> bytes:
    """One RESP command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class Client(asyncio.Protocol):
    """One request at a time: write a frame, await its one reply."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.reply: asyncio.Future[Any] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        reply = self.reader.gets()
        if reply is not False and self.reply is not None:
            self.reply.set_result(reply)

    async def call(self, data: bytes) -> Any:
        self.reply = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(data)
        return await self.reply


async def script_usec(probe: Redis) -> tuple[int, int]:
    """Calls and microseconds of EVALSHA and FCALL so far."""
    info = await probe.info("commandstats")
    stats = [info.get(f"cmdstat_{name}", {}) for name in ("evalsha", "fcall")]
    return sum(int(s.get("calls", 0)) for s in stats), sum(int(s.get("usec", 0)) for s in stats)


async def measure(
    n: int, probe: Redis, call: Callable[[], Awaitable[Any]]
) -> tuple[float, float, float]:
    """Per call: wall us, client CPU us, server us per script call."""
    calls0, usec0 = await script_usec(probe)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(n):
        await call()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    calls1, usec1 = await script_usec(probe)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    server = (usec1 - usec0) / max(1, calls1 - calls0)
    return wall / n * 1e6, cpu / n * 1e6, server


async def main(args: argparse.Namespace) -> None:
    url = urlparse(args.redis_url)
    token = f"rt_{uuid.uuid4().hex[:8]}"
    probe = Redis.from_url(args.redis_url)
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(Client, url.hostname, url.port or 6379)
    queue = Queue.from_url(args.redis_url, name="rt", prefix=token)
    await queue.connect()
    scripts = sources()
    shas = {
        name: await client.call(frame("SCRIPT", "LOAD", text))
        for name, text in (
            ("floor", "return 1"),
            ("saq", SAQ_SCRIPT),
            ("conveyor", scripts["enqueue"]),
        )
    }
    base = f"{token}:{{rt}}:"  # the shape of a queue's key base (keys.KeyScheme.base)
    keys = [f"{base}k{i}" for i in range(11)]

    _, lib = library()  # loaded by queue.connect()

    def conveyor_args(*head: str | bytes) -> Callable[[], Awaitable[Any]]:
        def call() -> Awaitable[Any]:
            key, now = uuid.uuid4().hex, repr(time.time())  # now: the script's first argument
            return client.call(
                frame(*head, 11, *keys, base, now, key, "noop", '{"k":1}', 0, "0.0", "", "", 0)
            )

        return call

    def saq_args() -> Awaitable[Any]:
        key = uuid.uuid4().hex
        keys = (f"{base}incomplete", f"{base}job:{key}", f"{base}queued", f"{base}abort:{key}")
        payload = json.dumps({"k": 1, "key": key})
        return client.call(frame("EVALSHA", shas["saq"], 4, *keys, payload, "0"))

    rows: dict[str, Callable[[], Awaitable[Any]]] = {
        "floor": conveyor_args("EVALSHA", shas["floor"]),
        "saq script": saq_args,
        "conveyor evalsha": conveyor_args("EVALSHA", shas["conveyor"]),
        "conveyor script": conveyor_args("FCALL", f"{lib}_enqueue"),
        "conveyor enqueue": lambda: queue.enqueue("noop"),
    }
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in rows}
    try:
        for call in rows.values():  # warm up
            for _ in range(50):
                await call()
        for round_ in range(args.runs):
            order = list(rows.items())
            if round_ % 2:
                order.reverse()
            for name, call in order:
                results[name].append(await measure(args.n, probe, call))
    finally:
        await queue.disconnect()
        batch = [key async for key in probe.scan_iter(match=f"*{token}*", count=1000)]
        for i in range(0, len(batch), 1000):
            await probe.unlink(*batch[i : i + 1000])
        await probe.aclose()
    print(f"Redis enqueue, one awaited call at a time: medians of {args.runs} rounds of "
          f"{args.n:,} calls")  # fmt: skip
    print()
    print("| row | wall (us/call) | client CPU (us/call) | server (us/script call) |")
    print("|---|---:|---:|---:|")
    for name, runs in results.items():
        wall, cpu, server = (statistics.median(r[i] for r in runs) for i in range(3))
        server_text = f"{server:.1f}" if name != "conveyor enqueue" or server else "-"
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {server_text} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    asyncio.run(main(parser.parse_args()))
