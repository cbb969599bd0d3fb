"""Keeping task cancellation intact across redis-py calls.

redis-py (8.x sets ``socket_timeout=5`` by default) sends commands inside
``asyncio.wait_for`` when a socket timeout is set. On Python 3.11, ``wait_for`` returns
normally when a cancellation lands just as the send completes: the request is lost, and a
worker task being stopped runs on forever. Each backend call notes how many cancellation
requests its task had before awaiting redis-py and raises ``CancelledError`` itself when one
arrived without being raised.
"""

from __future__ import annotations

import asyncio


def cancel_requests() -> int:
    """How many cancellation requests the current task has pending (0 outside a task)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def raise_if_cancel_lost(before: int) -> None:
    """Raise ``CancelledError`` when a cancellation arrived since ``before`` was taken.

    Raises:
        asyncio.CancelledError: When the current task was cancelled meanwhile.
    """
    if cancel_requests() > before:
        raise asyncio.CancelledError
