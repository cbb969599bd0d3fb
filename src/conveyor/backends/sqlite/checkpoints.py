"""Checkpoints of the write-ahead log on a thread of their own, off the operations' path.

SQLite copies the WAL back into the database (a checkpoint) when a commit leaves the WAL
longer than ``wal_autocheckpoint`` pages, on the connection that committed: that commit
then takes as long as copying a thousand pages and an fsync (16 to 35 ms measured on the
development machine, where a commit takes a fraction of a millisecond). An enqueue or a
claim that happens to cross the threshold pays it, and an idle worker woken for a job
starts that much later: about one pickup in fifty did, which made the 99th percentile of
pickup latency a checkpoint's duration.

So each backend checkpoints from its own thread and connection (a ``PASSIVE``
checkpoint: readers and writers go on meanwhile), at most every :data:`INTERVAL` seconds
and only while it is in use, and its operation connections checkpoint by themselves only
past :data:`BACKSTOP_PAGES`. SQLite starts the WAL over from its beginning when a write
begins after a complete checkpoint: between bursts of work it does; under writes that never
pause, the WAL grows to the backstop, where a commit's own checkpoint (of the few pages
the thread did not copy yet) lets it start over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from pathlib import Path

from conveyor.backends.sqlite.thread import DatabaseThread

#: Seconds between two checkpoints of one backend, at most one in flight.
INTERVAL = 0.2
#: ``wal_autocheckpoint`` of the operation connections (SQLite's default is 1,000 pages).
BACKSTOP_PAGES = 4_000


def open_checkpointer(path: Path) -> sqlite3.Connection:
    """The connection that only checkpoints; it never waits on a lock."""
    return sqlite3.connect(path, isolation_level=None, timeout=0)


def checkpoint(conn: sqlite3.Connection) -> None:
    """A ``PASSIVE`` checkpoint: copies what no reader still needs, blocks nobody."""
    with contextlib.suppress(sqlite3.Error):  # busy: another checkpoint runs; next time
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class Checkpoints:
    """Starts a checkpoint on its thread when the backend was used and none ran lately.

    Args:
        path: The database file.
        name: The thread's name.
    """

    def __init__(self, path: Path, name: str) -> None:
        self._thread = DatabaseThread(functools.partial(open_checkpointer, path), name)
        self._last = time.monotonic()
        self._running: asyncio.Future[None] | None = None

    def used(self) -> None:
        """Called after each operation of the backend, on the event loop's thread."""
        running = self._running
        if running is not None and not running.get_loop().is_closed():
            return  # one at a time (one started on a loop since closed will never end)
        if time.monotonic() - self._last < INTERVAL:
            return
        self._last = time.monotonic()
        self._running = asyncio.ensure_future(self._thread.call(checkpoint))
        self._running.add_done_callback(self._ended)

    def _ended(self, future: asyncio.Future[None]) -> None:
        self._running = None
        if not future.cancelled():
            future.exception()  # retrieved: a stopped thread is not worth a warning

    async def stop(self) -> None:
        """Let a running checkpoint end, then close the connection and end the thread."""
        running = self._running
        if running is not None:
            with contextlib.suppress(Exception):
                await running
        await self._thread.stop()

    def stop_soon(self) -> None:
        """Like :meth:`stop`, without waiting (for a finalizer)."""
        self._thread.stop_soon()
