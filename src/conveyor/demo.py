"""``conveyor demo``: a worker, a producer and a live view of both, on the embedded default.

The worker runs four example tasks and a cron job on a SQLite file (in a temporary
directory unless ``--db`` names one): images are resized, emails are sent (and their task
logs), card charges fail and succeed on a retry, and a report fails every attempt. The
producer enqueues ``--jobs`` jobs, one every fifth of a second, then waits for them all;
each start, log line, retry, failure and completion is printed as it happens, and a summary
table ends the run. With ``--forever`` the producer never stops; Ctrl-C ends it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from conveyor.cron import CronJob
from conveyor.errors import ConfigurationError
from conveyor.job import Job, Status
from conveyor.queue import Queue
from conveyor.worker import Worker
from conveyor.worker.executor import current_job

task_logger = logging.getLogger("conveyor.demo.tasks")

#: Seconds between two enqueued jobs.
PACE_S = 0.2
#: Seconds the producer waits for its last jobs before giving up.
FINISH_TIMEOUT_S = 60.0


# The example tasks. Like every Conveyor task: ``async def name(ctx, *, arguments)``.


async def resize_image(ctx: dict[str, Any], *, name: str, width: int) -> dict[str, Any]:
    """Pretend to resize an image (sleeps a little, proportional to the width)."""
    await asyncio.sleep(0.1 + width / 4000)
    return {"thumbnail": f"{name}-{width}px.png"}


async def send_email(ctx: dict[str, Any], *, to: str) -> str:
    """Pretend to send an email, logging each step."""
    task_logger.info("connecting to smtp.example.com for %s", to)
    await asyncio.sleep(0.1)
    task_logger.info("sent the welcome email to %s", to)
    return "sent"


async def charge_card(ctx: dict[str, Any], *, order: int, fail_times: int = 0) -> dict[str, Any]:
    """Charge a card; the payment gateway times out on the first ``fail_times`` attempts."""
    await asyncio.sleep(0.15)
    if ctx["job"].attempts <= fail_times:
        raise ConnectionError("payment gateway timed out")
    return {"order": order, "charged": True}


async def build_report(ctx: dict[str, Any], *, month: str) -> None:
    """Always fails: there is no data for the month asked for."""
    await asyncio.sleep(0.05)
    raise ValueError(f"no sales data for {month}")


async def queue_stats(ctx: dict[str, Any]) -> str:
    """The cron job: a line about the queue, every two seconds."""
    info = await ctx["queue"].info()
    return f"{info['queued']} queued, {info['active']} active, {info['scheduled']} scheduled"


FUNCTIONS = [resize_image, send_email, charge_card, build_report, queue_stats]
CRON_JOBS = [CronJob(queue_stats, cron="* * * * * */2")]

# What the producer enqueues, in a cycle: (function, arguments, job options).
_PLAN: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("resize_image", {"name": "cat", "width": 640}, {}),
    ("send_email", {"to": "ada@example.com"}, {}),
    ("charge_card", {"order": 1001, "fail_times": 1}, {"retries": 3, "retry_delay": 0.3}),
    ("resize_image", {"name": "dog", "width": 1280}, {}),
    ("build_report", {"month": "2024-13"}, {"retries": 2, "retry_delay": 0.3}),
    ("resize_image", {"name": "owl", "width": 320}, {}),
    ("send_email", {"to": "grace@example.com"}, {}),
    ("charge_card", {"order": 1002, "fail_times": 2}, {"retries": 3, "retry_delay": 0.3}),
    ("resize_image", {"name": "fox", "width": 960}, {}),
    ("charge_card", {"order": 1003}, {"retries": 3}),
]


def plan(count: int | None) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The producer's jobs: the plan in a cycle, ``count`` of them (None: forever)."""
    number = 0
    while count is None or number < count:
        function, kwargs, options = _PLAN[number % len(_PLAN)]
        yield function, dict(kwargs), dict(options)
        number += 1


@dataclasses.dataclass
class Tally:
    """What happened to the jobs of one function."""

    runs: int = 0
    complete: int = 0
    retried: int = 0
    failed: int = 0
    durations_ms: list[int] = dataclasses.field(default_factory=list)


class LiveView:
    """Prints what happens as it happens, and the summary at the end.

    Args:
        out: Where to print.
        color: Use ANSI colours.
    """

    _COLORS = {"start": "36", "log": "2", "retry": "33", "failed": "31", "complete": "32"}
    _UNICODE = {"start": "▶", "log": "·", "retry": "↻", "failed": "✘", "complete": "✔"}
    _ASCII = {"start": ">", "log": ".", "retry": "~", "failed": "x", "complete": "+"}

    def __init__(self, out: TextIO, color: bool) -> None:
        self.out = out
        self.color = color
        encoding = (getattr(out, "encoding", None) or "ascii").lower()
        self.symbols = self._UNICODE if "utf" in encoding else self._ASCII
        self.started = time.monotonic()
        self.labels: dict[str, str] = {}
        self.tallies: dict[str, Tally] = {}

    def label(self, job: Job) -> str:
        """A short name for a job: ``job 7`` in the order enqueued, ``cron`` for cron runs."""
        if job.meta.get("trigger") == "cron":
            return "cron"
        return self.labels.setdefault(job.key, f"job {len(self.labels) + 1}")

    def line(self, event: str, job: Job, text: str) -> None:
        """Print one event."""
        elapsed = time.monotonic() - self.started
        mark = f"{self.symbols[event]} {event:<8}"
        if self.color:
            mark = f"\033[{self._COLORS[event]}m{mark}\033[0m"
        print(
            f"{elapsed:6.2f}s  {mark}  {job.function:<13} {self.label(job):<7} {text}".rstrip(),
            file=self.out,
            flush=True,
        )

    async def before_process(self, ctx: dict[str, Any]) -> None:
        """Worker hook: a job starts."""
        job: Job = ctx["job"]
        self.line("start", job, f"attempt {job.attempts}/{job.retries}")

    async def after_process(self, ctx: dict[str, Any]) -> None:
        """Worker hook: an attempt ended; the job's status says how."""
        job: Job = ctx["job"]
        tally = self.tallies.setdefault(job.function, Tally())
        tally.runs += 1
        took = int(time.time() * 1000) - job.started if job.started else 0
        tally.durations_ms.append(took)
        if job.status == Status.COMPLETE:
            tally.complete += 1
            self.line("complete", job, f"{took:>4} ms  -> {job.result!r}")
        elif job.status == Status.QUEUED:
            tally.retried += 1
            wait = max(0.0, float(job.scheduled or 0) - time.time())
            self.line("retry", job, f"{took:>4} ms  {job.error}; again in {wait:.1f}s")
        else:
            tally.failed += 1
            self.line("failed", job, f"{took:>4} ms  {job.error} (no attempts left)")

    def summary(self, elapsed: float, where: str) -> None:
        """Print the table of what happened to each function."""
        header = f"{'function':<14}{'runs':>6}{'done':>6}{'retried':>9}{'failed':>8}"
        header += f"{'avg ms':>8}{'max ms':>8}"
        rows = [header, "-" * len(header)]
        total = Tally()
        for function, tally in sorted(self.tallies.items()):
            rows.append(self._row(function, tally))
            total.runs += tally.runs
            total.complete += tally.complete
            total.retried += tally.retried
            total.failed += tally.failed
            total.durations_ms.extend(tally.durations_ms)
        rows += ["-" * len(header), self._row("total", total)]
        print("", *rows, "", sep="\n", file=self.out)
        print(f"{total.runs} runs in {elapsed:.1f}s on {where}", file=self.out, flush=True)

    @staticmethod
    def _row(name: str, tally: Tally) -> str:
        durations = tally.durations_ms or [0]
        average = sum(durations) // len(durations)
        return (
            f"{name:<14}{tally.runs:>6}{tally.complete:>6}{tally.retried:>9}{tally.failed:>8}"
            f"{average:>8}{max(durations):>8}"
        )


class _TaskLogHandler(logging.Handler):
    """Shows the tasks' log records as events of the job that logged them."""

    def __init__(self, view: LiveView) -> None:
        super().__init__()
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        job = current_job.get()  # the running job travels in a ContextVar
        if job is not None:
            self.view.line("log", job, record.getMessage())


async def produce(queue: Queue, view: LiveView, count: int | None, stop: asyncio.Event) -> int:
    """Enqueue the plan's jobs at a steady pace, then wait for them to finish.

    Returns:
        How many jobs were enqueued.
    """
    keys = []
    for function, kwargs, options in plan(count):
        if stop.is_set():
            break
        job = await queue.enqueue(function, **kwargs, **options)
        if job is not None:
            view.label(job)
            keys.append(job.key)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PACE_S)
    if not stop.is_set():
        waiting = asyncio.ensure_future(queue.wait(keys, timeout=FINISH_TIMEOUT_S))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not waiting.done():
            waiting.cancel()
        elif waiting.exception() is not None:
            raise waiting.exception()  # type: ignore[misc]
    return len(keys)


async def run_demo(
    url: str, where: str, count: int | None, out: TextIO = sys.stdout, color: bool = False
) -> int:
    """Run the worker and the producer on ``url`` until the producer is done.

    Returns:
        The exit code: 0, or 1 when the jobs did not finish in time.
    """
    view = LiveView(out, color)
    queue = Queue.from_url(url, name="demo")
    worker = Worker(
        queue,
        FUNCTIONS,
        cron_jobs=CRON_JOBS,
        concurrency=4,
        before_process=view.before_process,
        after_process=view.after_process,
        timers={"schedule": 0.5, "stats": 2, "sweep": 2, "abort": 0.5},
        shutdown_grace_period_s=2,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    handler = _TaskLogHandler(view)
    task_logger.addHandler(handler)
    task_logger.setLevel(logging.INFO)
    amount = "jobs until Ctrl-C" if count is None else f"{count} jobs"
    print(f"Conveyor demo: a worker with 4 slots on {where}, {amount}", file=out)
    print("cron: queue_stats every 2 seconds (* * * * * */2)\n", file=out, flush=True)
    code = 0
    try:
        await queue.connect()
        running = asyncio.create_task(worker.start())
        try:
            enqueued = await produce(queue, view, count, stop)
        except TimeoutError:
            print(f"the jobs did not finish within {FINISH_TIMEOUT_S:g}s", file=out)
            code, enqueued = 1, len(view.labels)
        finally:
            await worker.stop()
            await running
        view.summary(time.monotonic() - view.started, where)
        print(f"{enqueued} jobs enqueued by the producer", file=out, flush=True)
    finally:
        task_logger.removeHandler(handler)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await queue.disconnect()
    return code


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``conveyor demo``."""
    parser = argparse.ArgumentParser(
        prog="conveyor demo",
        description="Run a worker and a producer on the embedded SQLite default and show "
        "what happens: starts, logs, retries, failures, a cron job and a summary.",
    )
    parser.add_argument(
        "--jobs", type=int, default=20, help="How many jobs to enqueue (default: 20)"
    )
    parser.add_argument("--forever", action="store_true", help="Keep enqueueing until Ctrl-C")
    parser.add_argument(
        "--db",
        default=None,
        help="The SQLite file to use (kept afterwards); by default a temporary one",
    )
    parser.add_argument(
        "--url", default=None, help="Another queue URL instead of SQLite, e.g. redis://localhost"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``conveyor demo``.

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        print("conveyor demo: error: --jobs must be at least 1", file=sys.stderr)
        return 2
    count = None if args.forever else args.jobs
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    with contextlib.ExitStack() as stack:
        if args.url:
            url = where = args.url
        else:
            if args.db:
                path = Path(args.db).resolve()
            else:
                temporary = stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-"))
                path = Path(temporary) / "conveyor-demo.db"
            url = f"sqlite:///{path}"
            where = str(path) if args.db else f"{path} (temporary)"
        try:
            return asyncio.run(run_demo(url, where, count, sys.stdout, color))
        except ConfigurationError as exc:
            print(f"conveyor demo: error: {exc}", file=sys.stderr)
            return 2
    return 0  # unreachable; keeps mypy sure every path returns


__all__ = ["FUNCTIONS", "LiveView", "build_parser", "main", "plan", "run_demo"]
