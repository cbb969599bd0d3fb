"""Tasks and settings the console tests run: a worker subprocess imports this module.

The queue is the SQLite file named by ``CONVEYOR_WEB_TEST_DB``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from pathlib import Path
from typing import Any, Literal

from conveyor import CronJob, Queue

log = logging.getLogger("console_tasks")


async def greet(ctx: dict[str, Any], *, name: str, times: int = 1, loud: bool = False) -> str:
    """Say hello to someone.

    Logs one line per greeting.
    """
    for index in range(times):
        log.info("hello %s (%d of %d)", name.upper() if loud else name, index + 1, times)
    return f"hello {name}"


async def wait_for_file(ctx: dict[str, Any], *, path: str, lines: int = 1) -> str:
    """Log, wait until ``path`` exists, log again: a test controls when it ends."""
    for index in range(lines):
        log.info("waiting line %d", index + 1)
    while not await asyncio.to_thread(Path(path).exists):  # noqa: ASYNC110 - a test creates it
        await asyncio.sleep(0.05)
    log.warning("released by %s", path)
    return "released"


async def fail(ctx: dict[str, Any], *, message: str = "boom") -> None:
    """Always fails."""
    log.error("about to fail: %s", message)
    raise RuntimeError(message)


async def fail_unless(ctx: dict[str, Any], *, path: str) -> str:
    """Fails until ``path`` exists: a test decides when a retry succeeds."""
    if not await asyncio.to_thread(Path(path).exists):
        raise RuntimeError(f"{path} does not exist yet")
    return "found"


class ReportKind(enum.Enum):
    DAILY = "daily"
    WEEKLY = "weekly"


async def report(
    ctx: dict[str, Any],
    *,
    kind: ReportKind = ReportKind.DAILY,
    currency: Literal["EUR", "USD"] = "EUR",
    tags: list[str] | None = None,
    limits: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Build a report (its arguments have types a form must respect)."""
    return {"kind": kind, "currency": currency, "tags": tags, "limits": limits}


async def nightly(ctx: dict[str, Any]) -> None:
    """The cron job of the tests."""
    log.info("nightly run")


FUNCTIONS = [greet, wait_for_file, fail, fail_unless, report, nightly]
CRON_JOBS = [
    CronJob(nightly, cron="30 3 * * *", timeout=60),
    CronJob(report, cron="0 6 * * 1", kwargs={"kind": "weekly", "currency": "USD"}),
]
TIMERS = {"stats": 1, "logs": 0.2, "sweep": 1, "abort": 0.3, "schedule": 1}


def settings() -> dict[str, Any]:
    """The worker settings: the queue file from the environment."""
    return {
        "queue": Queue.from_url(f"sqlite:///{os.environ['CONVEYOR_WEB_TEST_DB']}"),
        "functions": FUNCTIONS,
        "cron_jobs": CRON_JOBS,
        "concurrency": 4,
        "timers": TIMERS,
        "shutdown_grace_period_s": 1,
    }
