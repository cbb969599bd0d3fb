"""Waking idle workers and waiters with LISTEN/NOTIFY.

One dedicated autocommit connection per backend (never a pooled one: a pool would hand the
LISTEN to someone else; behind PgBouncer in transaction mode it goes to ``direct_url``, see
:mod:`~conveyor.backends.postgres.sessions`) iterates
``notifies()``. It reconnects by itself with a capped exponential backoff; while it is down,
waiters fall back to polling. Every payload is ``<kinds>:<queue>``: ``w`` (work may be
claimable) and ``f`` (jobs finished or changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

logger = logging.getLogger("conveyor.backends.postgres")

Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]

#: Seconds between health probes of an otherwise silent LISTEN connection.
PROBE_INTERVAL = 30.0
#: Seconds a connection attempt or a probe may take before the connection is dropped.
IO_TIMEOUT = 10.0


class Waiters:
    """Futures woken together; a waiter that times out or is cancelled removes itself."""

    def __init__(self) -> None:
        self._futures: set[asyncio.Future[None]] = set()

    def wake(self) -> None:
        """Wake every current waiter."""
        for future in self._futures:
            if not future.done():
                future.set_result(None)
        self._futures.clear()

    async def wait(self, timeout: float) -> None:
        """Return when woken or after ``timeout`` seconds."""
        if timeout <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.add(future)
        try:
            await asyncio.wait((future,), timeout=timeout)
        finally:
            self._futures.discard(future)
            if not future.done():
                future.cancel()


class Listener:
    """Listens on one channel for one queue and wakes the backend's waiters.

    Args:
        connect: Opens a new autocommit connection.
        channel: The channel the backend's statements notify.
        queue_name: Notifications for other queues of the schema are ignored.
    """

    def __init__(self, connect: Connect, channel: str, queue_name: str) -> None:
        self._connect = connect
        self._channel = channel
        self._queue = queue_name
        self.work = Waiters()
        self.finished = Waiters()
        #: Counts "work" notifications, so that one arriving between a claim and the next
        #: wait is not missed.
        self.work_generation = 0
        self.listening = False
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called (and :meth:`stop` was not)."""
        return self._task is not None

    async def start(self, wait: float = IO_TIMEOUT) -> None:
        """Start listening; returns once the first connection attempt has ended.

        Args:
            wait: Seconds to wait at most for that first attempt.
        """
        if self._task is None:
            self._first_attempt.clear()
            self._task = asyncio.create_task(self._run(), name=f"conveyor-listen-{self._queue}")
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_attempt.wait(), wait)

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.listening = False
        self._wake_all()

    def _wake_all(self) -> None:
        self.work_generation += 1
        self.work.wake()
        self.finished.wake()

    def dispatch(self, payload: str) -> None:
        """Wake the waiters a notification payload concerns."""
        kinds, _, queue = payload.partition(":")
        if queue != self._queue:
            return
        if "w" in kinds:
            self.work_generation += 1
            self.work.wake()
        if "f" in kinds:
            self.finished.wake()

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                if self.listening:
                    delay = 0.05  # it worked until now: retry soon
                logger.warning("LISTEN connection lost (%s); retrying in %.2fs", exc, delay)
            finally:
                self.listening = False
                self._first_attempt.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _listen(self) -> None:
        conn = await asyncio.wait_for(self._connect(), IO_TIMEOUT)
        try:
            await conn.execute(f'LISTEN "{self._channel}"')
            self.listening = True
            self._first_attempt.set()
            # Notifications sent while we were away are lost: let every waiter look again.
            self._wake_all()
            while True:
                async for note in conn.notifies(timeout=PROBE_INTERVAL):
                    self.dispatch(note.payload)
                # A silent connection may be dead without knowing it: probe it.
                await asyncio.wait_for(conn.execute("SELECT 1"), IO_TIMEOUT)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
