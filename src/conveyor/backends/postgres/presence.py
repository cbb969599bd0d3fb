"""Presence locks: a worker's database session vouches that the worker is alive.

The first claim or recovery for a worker id makes the backend hold a session-level shared
advisory lock on (the schema, the worker id) on a connection of its own, kept open and, when
lost, opened again with its locks taken again. Claims, recoveries and renewals made while
the lock is held mark their rows ``owner_present``; ``expire_dead_leases`` (see the query)
ends the leases of marked rows whose owner's lock nobody holds any more.

A session that ended does not prove that its worker died (a restart of the server ends every
session, a network fault may end one), so the query also asks that the owner has not
renewed for a third of its lease, and that the caller's own presence session has lived that
long: after a restart, every live worker has time to connect and renew again.

A pooled connection cannot hold the lock (the pool would hand it to someone else), nor can
PgBouncer in transaction mode: with ``poll_interval`` there is no presence, rows are never
marked, and leases end only when they expire.
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

#: Seconds between health probes of the connection (a dead one is replaced).
PROBE_INTERVAL = 2.0
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
        self._changed = asyncio.Event()
        self._locked = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        #: The server pid of the session that holds the locks, while it is up.
        self.pid: int | None = None

    def held(self, worker_id: str) -> bool:
        """Whether the lock of ``worker_id`` is held (as far as this process knows)."""
        return worker_id in self._held

    async def hold(self, worker_id: str) -> bool:
        """Hold the lock of ``worker_id`` from now on; wait a little for it the first time.

        Returns:
            Whether it is held.
        """
        if worker_id in self._held:
            return True
        if worker_id not in self._wanted:
            self._wanted.add(worker_id)
            self._changed.set()
            self.start()
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
                async with self._locked:
                    self._locked.notify_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), PROBE_INTERVAL)
                if not self._changed.is_set():
                    await asyncio.wait_for(conn.execute("SELECT 1"), IO_TIMEOUT)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
