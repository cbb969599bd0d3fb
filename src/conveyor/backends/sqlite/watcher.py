"""Waking waiters when the database changes, within this process and across processes.

SQLite has no cross-process notification, but ``PRAGMA data_version`` read on a connection
changes whenever *another* connection commits, and reading it costs a few microseconds. So
while anyone waits, one poller task per backend reads it every ``interval`` seconds on a
dedicated connection and wakes the waiters when it moved. Commits made by this backend wake
its waiters at once through :meth:`ChangeWatcher.notify`, without waiting for the poll.

Each channel (``work``, ``finish``) remembers the version its waiters last woke up to. A
commit that lands between a caller's last read and its next wait is therefore caught by the
first poll of that wait, instead of being missed until the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

CHANNELS = ("work", "finish")


class ChangeWatcher:
    """Waits on named channels, woken by local notifications and by a data-version poll.

    Args:
        read_version: Reads the current data version; None when it could not be read
            (treated as a change: waking early is harmless, sleeping through work is not).
        interval: Seconds between two polls while someone waits.
    """

    def __init__(self, read_version: Callable[[], int | None], interval: float) -> None:
        self._read = read_version
        self._interval = interval
        self._waiters: dict[str, set[asyncio.Future[None]]] = {c: set() for c in CHANNELS}
        start = read_version()
        self._seen: dict[str, int | None] = dict.fromkeys(CHANNELS, start)
        self._poller: asyncio.Task[None] | None = None

    def notify(self, channel: str) -> None:
        """Wake every waiter of ``channel`` now (call from the event loop's thread)."""
        waiters = self._waiters[channel]
        for future in waiters:
            if not future.done():
                future.set_result(None)
        waiters.clear()

    async def wait(self, channel: str, timeout: float) -> None:
        """Return when ``channel`` is notified, another connection commits, or on timeout."""
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiters = self._waiters[channel]
        waiters.add(future)
        self._ensure_poller(loop)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        finally:
            waiters.discard(future)

    async def close(self) -> None:
        """Stop polling and release every waiter."""
        for channel in CHANNELS:
            self.notify(channel)
        poller, self._poller = self._poller, None
        if poller is not None and not poller.done():
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await poller

    def _ensure_poller(self, loop: asyncio.AbstractEventLoop) -> None:
        poller = self._poller
        if poller is None or poller.done() or poller.get_loop() is not loop:
            self._poller = loop.create_task(self._poll(), name="conveyor-sqlite-watcher")

    async def _poll(self) -> None:
        while any(self._waiters.values()):
            await asyncio.sleep(self._interval)
            version = self._read()
            for channel in CHANNELS:
                if not self._waiters[channel]:
                    continue  # its next waiter compares against what it saw last
                if version is None or version != self._seen[channel]:
                    self._seen[channel] = version
                    self.notify(channel)
