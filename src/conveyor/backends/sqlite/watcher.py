"""Waking waiters when the database changes, within this process and across processes.

SQLite has no cross-process notification, but ``PRAGMA data_version`` read on a connection
changes whenever *another* connection commits, and reading it costs a few microseconds. So
while anyone waits, one poller task per backend reads it every ``interval`` seconds on a
dedicated connection and wakes the waiters when it moved. Commits made by this backend wake
its waiters at once through :meth:`ChangeWatcher.notify`, without waiting for the poll.
Commits of other processes of this host wake them at once too, through the datagrams of a
:class:`~.doorbell.Doorbell` (read while someone waits); the poll remains for the rest.

Each channel (``work``, ``finish``) remembers the version its waiters last woke up to. A
commit that lands between a caller's last read and its next wait is therefore caught by the
first poll of that wait, instead of being missed until the timeout; a datagram for a
channel nobody waits on is kept, and the next wait on that channel returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from conveyor.backends.sqlite.doorbell import Doorbell

CHANNELS = ("work", "finish")


class ChangeWatcher:
    """Waits on named channels, woken by local notifications, datagrams and a poll.

    Args:
        read_version: Reads the current data version; None when it could not be read
            (treated as a change: waking early is harmless, sleeping through work is not).
        interval: Seconds between two polls while someone waits.
        doorbell: Where other processes' datagrams arrive; None to rely on the poll.
    """

    def __init__(
        self,
        read_version: Callable[[], int | None],
        interval: float,
        doorbell: Doorbell | None = None,
    ) -> None:
        self._read = read_version
        self._interval = interval
        self._waiters: dict[str, set[asyncio.Future[None]]] = {c: set() for c in CHANNELS}
        start = read_version()
        self._seen: dict[str, int | None] = dict.fromkeys(CHANNELS, start)
        self._poller: asyncio.Task[None] | None = None
        self._doorbell = doorbell
        self._rung: set[str] = set()  # datagrams' channels that nobody waited on
        self._listening: tuple[asyncio.AbstractEventLoop, int] | None = None

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
        self._listen(loop)
        future: asyncio.Future[None] = loop.create_future()
        waiters = self._waiters[channel]
        waiters.add(future)
        try:
            if channel in self._rung:  # rung while nobody waited: the caller may have missed it
                self._rung.discard(channel)
                return
            self._ensure_poller(loop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        finally:
            waiters.discard(future)
            if not any(self._waiters.values()):
                self._unlisten()

    async def close(self) -> None:
        """Stop polling and listening, and release every waiter."""
        for channel in CHANNELS:
            self.notify(channel)
        self._unlisten()
        poller, self._poller = self._poller, None
        if poller is not None and not poller.done():
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await poller

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        # Read datagrams only while someone waits: an idle process is not woken by every
        # commit of the others; what arrives meanwhile waits in the socket (a few at most).
        if self._doorbell is None or (self._listening and self._listening[0] is loop):
            return
        self._unlisten()
        receiver = self._doorbell.bind()
        if receiver is None:
            return
        try:
            loop.add_reader(receiver.fileno(), self._on_datagrams)
        except (NotImplementedError, OSError):  # a loop that cannot watch sockets: the poll
            self._doorbell = None
            return
        self._listening = (loop, receiver.fileno())
        self._on_datagrams()  # those that arrived while nobody listened

    def _unlisten(self) -> None:
        listening, self._listening = self._listening, None
        if listening is not None:
            loop, fd = listening
            with contextlib.suppress(RuntimeError, ValueError, OSError):  # loop closed
                loop.remove_reader(fd)

    def _on_datagrams(self) -> None:
        if self._doorbell is None:
            return
        channels = self._doorbell.drain() & set(CHANNELS)
        if not channels:
            return
        # The sender committed before it rang: whoever wakes now reads its commit, so the
        # poll need not wake them again for it.
        version = self._read()
        for channel in channels:
            if self._waiters[channel]:
                self._seen[channel] = version
                self.notify(channel)
            else:
                self._rung.add(channel)

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
