"""SAQ's public helpers (``saq.utils``), under the same names.

Times are epoch milliseconds (:func:`now`) or seconds (:func:`now_seconds`), as in SAQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import uuid
from collections.abc import Iterable
from typing import Any

from conveyor.job import now_ms

__all__ = [
    "cancel_tasks",
    "exponential_backoff",
    "millis",
    "now",
    "now_seconds",
    "seconds",
    "uuid1",
]


def now() -> int:
    """The current time in epoch milliseconds."""
    return now_ms()


def now_seconds() -> float:
    """The current time in epoch seconds."""
    return time.time()


def uuid1() -> str:
    """A new version-1 UUID as text."""
    return str(uuid.uuid1())


def millis(s: float) -> float:
    """Seconds to milliseconds."""
    return s * 1000


def seconds(ms: float) -> float:
    """Milliseconds to seconds."""
    return ms / 1000


def exponential_backoff(
    attempts: int,
    base_delay: float,
    max_delay: float | None = None,
    jitter: bool = True,
) -> float:
    """The delay before the next retry, doubling from ``base_delay`` with each attempt.

    Args:
        attempts: Attempts made so far (the first retry follows attempt 1).
        base_delay: The delay after the first attempt, in seconds.
        max_delay: The longest delay, in seconds; None for no bound.
        jitter: Draw the delay uniformly between 0 and the computed one.

    Returns:
        Seconds to wait.
    """
    cap = math.inf if max_delay is None else max_delay
    delay = min(cap, base_delay * 2 ** max(attempts - 1, 0))
    return random.uniform(0, delay) if jitter else delay


async def cancel_tasks(tasks: Iterable[asyncio.Task[Any]], timeout: float = 1.0) -> None:
    """Cancel ``tasks`` and wait up to ``timeout`` seconds for them to end."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout)
