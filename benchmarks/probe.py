"""What the benchmark's jobs do, and how the worker process measures itself.

Every library runs the same four task bodies (wrapped in its own task signature by its
adapter). They report to the one :data:`PROBE` of the worker process, which counts
finished jobs, records pickup latencies and memory, and prints events as JSON lines on
stdout for the driver process.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from typing import Any

#: Task names, the same for every library (a library that namespaces them adds a suffix).
KINDS = ("noop", "sleep", "pickup", "hold")

#: How long the ``sleep`` task sleeps.
SLEEP_S = 0.01


def emit(event: str, **data: Any) -> None:
    """Write one event line to stdout, unbuffered (the driver reads them as they come)."""
    line = json.dumps({"event": event, **data}) + "\n"
    os.write(1, line.encode())


def rss_kib() -> int:
    """This process's resident set size, in KiB, from /proc."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Probe:
    """Counts and measures the jobs run in this worker process.

    Attributes:
        target: How many finished jobs end the measurement (None: the driver decides).
        hold_target: How many ``hold`` jobs must run at once before memory is sampled.
    """

    def __init__(self) -> None:
        self.target: int | None = None
        self.hold_target = 100
        self.finished = 0
        self.t_done = 0.0
        self.all_done = asyncio.Event()
        self._holding = 0
        self._release: asyncio.Event | None = None
        self._hold_sampled = False

    def done(self) -> None:
        """One job's body finished."""
        self.finished += 1
        if self.target is not None and self.finished >= self.target and not self.all_done.is_set():
            self.t_done = time.perf_counter()
            self.all_done.set()

    def picked(self, enqueued_at: float) -> None:
        """A ``pickup`` job started: report how long after its enqueue."""
        emit("picked", latency_ms=(time.time() - enqueued_at) * 1000.0)

    async def hold(self) -> None:
        """Stay running until :attr:`hold_target` jobs run at once (or 30 s pass)."""
        if self._release is None:
            self._release = asyncio.Event()
            asyncio.get_running_loop().call_later(30.0, self._sample_and_release)
        self._holding += 1
        if self._holding >= self.hold_target:
            self._sample_and_release()
        await self._release.wait()
        self.done()

    def _sample_and_release(self) -> None:
        if self._hold_sampled or self._release is None:
            return
        self._hold_sampled = True
        emit("busy_rss", rss_kib=rss_kib(), running=self._holding)
        self._release.set()


PROBE = Probe()


async def noop() -> None:
    """Do nothing."""
    PROBE.done()


async def sleep() -> None:
    """Wait 10 ms (an I/O-bound job)."""
    await asyncio.sleep(SLEEP_S)
    PROBE.done()


async def pickup(t: float) -> None:
    """Report the delay between the enqueue (at epoch ``t``) and now."""
    PROBE.picked(t)
    PROBE.done()


async def hold() -> None:
    """Run until 100 jobs run at once, so that memory is sampled under load."""
    await PROBE.hold()


BODIES = {"noop": noop, "sleep": sleep, "pickup": pickup, "hold": hold}
