"""Presence locks: a worker's database session vouches that the worker is alive.

The first claim or recovery for a worker id makes the backend hold a session-level shared
advisory lock on (the schema, the worker id) on a connection of its own, kept open and, when
lost, opened again with its locks taken again. Claims, recoveries and renewals made while
the lock is held mark their rows ``owner_present``; ``expire_dead_leases`` (see the query)
ends the leases of marked rows whose owner's lock nobody holds any more. A call with
``vouch=False`` (the HTTP proxy's, for its remote workers) takes no lock and leaves its rows
unmarked: their leases end only when they expire.

A session that ended does not prove that its worker died: a restart of the server ends
every session at once, and a connection may be killed alone (by an administrator, a
network device). So the query also asks that the owner has not renewed for
:data:`SILENT_S` (a live worker renews every second with the default timers, and takes its
lock again within a moment: the connection is watched, not polled), and that the caller's
own presence session has lived :data:`SETTLED_S` (after a restart, live workers reconnect
within the 1 s backoff cap and renew before a new sweeper may end anything; a worker that
saw the outage does not sweep for a lease anyway).

A pooled connection cannot hold the lock (the pool would hand it to someone else), nor can
a connection through PgBouncer in transaction mode: there the lock is held on a connection
to ``direct_url`` (see :mod:`~conveyor.backends.postgres.sessions`). With ``poll_interval``
there is no presence, rows are never marked, and leases end only when they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from conveyor.backends.postgres.database import alive

logger = logging.getLogger("conveyor.backends.postgres")

Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]

#: Seconds the owner of a lease must have been silent (no renewal) for
#: ``expire_dead_leases`` to end it once its lock is gone.
SILENT_S = 2.0
#: Seconds the caller's own presence session must have lived for ``expire_dead_leases`` to
#: end anything.
SETTLED_S = 2.0
#: Seconds between health probes of a connection that stays silent.
PROBE_INTERVAL = 5.0
#: Seconds a connection attempt or a statement may take before the connection is dropped.
IO_TIMEOUT = 10.0
#: Seconds the first claim for a worker id waits for its lock (then it claims unmarked).
FIRST_LOCK_WAIT = 1.0

LOCK = "SELECT pg_advisory_lock_shared(hashtext(%s), hashtext(%s))"


def lock_namespace(schema: str) -> str:
    """The text whose hash is the first key of a schema's presence locks."""
    return f"conveyor.presence.{schema}"


class Presence:
    """Holds the presence locks of the worker ids a backend claims for.

    Args:
        connect: Opens a new autocommit connection.
        schema: The backend's schema (the locks of two schemas never meet).
    """

    def __init__(self, connect: Connect, schema: str) -> None:
        self._connect = connect
        self.namespace = lock_namespace(schema)
        self._wanted: set[str] = set()
        self._held: set[str] = set()
        self._ever_held: set[str] = set()
        self._changed = asyncio.Event()
        self._locked = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        #: The server pid of the session that holds the locks, while it is up.
        self.pid: int | None = None

    def held(self, worker_id: str) -> bool:
        """Whether the lock of ``worker_id`` is held (as far as this process knows)."""
        return worker_id in self._held

    async def hold(self, worker_id: str) -> bool:
        """Hold the lock of ``worker_id`` from now on; until it was taken once, wait a little
        for it (every caller: a claim and a recovery of a new worker may run at once).

        Returns:
            Whether it is held.
        """
        if worker_id in self._held:
            return True
        if worker_id not in self._wanted:
            self._wanted.add(worker_id)
            self._changed.set()
            self.start()
        if worker_id not in self._ever_held:
            with contextlib.suppress(TimeoutError):
                async with self._locked:
                    locked = self._locked.wait_for(lambda: worker_id in self._held)
                    await asyncio.wait_for(locked, FIRST_LOCK_WAIT)
        return worker_id in self._held

    def start(self) -> None:
        """Open the connection in the background (without any lock until one is wanted)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="conveyor-presence"
            )

    async def stop(self) -> None:
        """Close the connection: every lock is released."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._held.clear()
        self.pid = None

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                await self._session()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                logger.warning("presence connection lost (%s); retrying in %.2fs", exc, delay)
            finally:
                self._held.clear()
                self.pid = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _idle(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Wait for a new worker id to lock (True), for the server to send something on the
        idle connection (its FATAL or its end, most likely), or for the probe interval."""
        readable = asyncio.Event()
        loop = asyncio.get_running_loop()
        fd = conn.pgconn.socket
        loop.add_reader(fd, readable.set)
        waits = {
            asyncio.ensure_future(self._changed.wait()),
            asyncio.ensure_future(readable.wait()),
        }
        try:
            await asyncio.wait(waits, timeout=PROBE_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(fd)
            for wait in waits:
                wait.cancel()
        return self._changed.is_set() and not readable.is_set()

    async def _session(self) -> None:
        conn = await asyncio.wait_for(self._connect(), IO_TIMEOUT)
        try:
            self.pid = conn.info.backend_pid
            while True:
                self._changed.clear()
                for worker_id in self._wanted - self._held:
                    params = (self.namespace, worker_id)
                    await asyncio.wait_for(conn.execute(LOCK, params), IO_TIMEOUT)
                    self._held.add(worker_id)
                    self._ever_held.add(worker_id)
                async with self._locked:
                    self._locked.notify_all()
                if await self._idle(conn):
                    continue  # a worker id to lock
                if not alive(conn):
                    raise psycopg.OperationalError("the presence connection was closed")
                await asyncio.wait_for(conn.execute("SELECT 1"), IO_TIMEOUT)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
