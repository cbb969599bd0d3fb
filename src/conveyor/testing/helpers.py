"""Helpers for tests: wait on conditions, never on bare sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """Wait until ``predicate()`` returns a truthy value and return that value.

    Args:
        predicate: A sync or async callable.
        timeout: Seconds before giving up.
        interval: Seconds between checks.
        message: Names the condition in the timeout error.

    Raises:
        TimeoutError: When the condition did not hold in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} did not hold within {timeout}s")
        await asyncio.sleep(interval)
