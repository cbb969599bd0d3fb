"""The SQLite backend: Conveyor's zero-setup default, shared safely by worker processes.

One daemon thread per backend owns the ``sqlite3`` connection; each protocol method is one
function submitted to it (one hop, one transaction, see :mod:`.thread`). The file is in WAL
mode, so readers never block the writer, and writes take the lock with
``BEGIN IMMEDIATE``, so two processes never claim the same job. Waiting for work or for a
job to finish is served by :class:`.watcher.ChangeWatcher`: an in-process notification for
this backend's own commits, a datagram (:mod:`.doorbell`) for those of other processes of
this host, sent on the database thread right after the commit, and a ``PRAGMA
data_version`` poll for everything else. Checkpoints of the WAL run on a thread of their own
(:mod:`.checkpoints`), not in the commits of the operations.

Fencing: a claim's run id is its lease's token (``jobs.token``); recover takes new tokens
from the same AUTOINCREMENT sequence, so no two leases ever share one. Every write that
carries a token checks it in the WHERE clause of the very statement that writes, inside the
``BEGIN IMMEDIATE`` transaction: check and write are one step.

A job's lease also names the process holding it (:mod:`.owners`), so that
:meth:`SQLiteBackend.expire_dead_leases` can end the leases of a process of this host that
is gone (killed, say) at the next sweep instead of when they run out.
"""

from __future__ import annotations

import functools
import sqlite3
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from conveyor.backends.base import (
    Capabilities,
    JobRow,
    Lease,
    LogLine,
    LogRow,
    NewJob,
    Payload,
    Renewal,
    RunEnd,
    RunFilter,
    RunRecord,
    Transition,
)
from conveyor.backends.sqlite.checkpoints import Checkpoints
from conveyor.backends.sqlite.connection import (
    SQLiteSettings,
    open_connection,
    open_watcher,
    read_data_version,
)
from conveyor.backends.sqlite.doorbell import Doorbell
from conveyor.backends.sqlite.operations import JobOperations, immediate
from conveyor.backends.sqlite.records import RecordOperations
from conveyor.backends.sqlite.schema import migrate
from conveyor.backends.sqlite.sql import load_queries
from conveyor.backends.sqlite.thread import DatabaseThread
from conveyor.backends.sqlite.watcher import ChangeWatcher
from conveyor.errors import BackendError

T = TypeVar("T")

#: A timer may fire a little early; a wait for a due time adds this much.
_DUE_SLACK = 0.001


class SQLiteBackend:
    """A queue stored in one SQLite file, which any number of queues and processes share.

    Args:
        queue_name: The queue's name; rows of other queues in the file are never touched.
        settings: Where the file is and how to open it (see :meth:`from_url`).
    """

    name = "sqlite"
    capabilities = Capabilities(cross_process=True, durable=True, transactional_enqueue=False)

    def __init__(self, queue_name: str, settings: SQLiteSettings) -> None:
        self.queue_name = queue_name
        self.settings = settings
        queries = load_queries()
        self._queries = queries
        self._jobs = JobOperations(queue_name, queries)
        self._records = RecordOperations(queue_name, queries)
        self._thread: DatabaseThread | None = None
        self._watch_conn: sqlite3.Connection | None = None
        self._watcher: ChangeWatcher | None = None
        self._doorbell: Doorbell | None = None
        self._checkpoints: Checkpoints | None = None
        self._finalizer: (
            weakref.finalize[[DatabaseThread, Checkpoints, Doorbell | None], SQLiteBackend] | None
        ) = None
        # The latest `now` this backend claimed at: jobs due by then were already looked at,
        # so wait_for_work only needs the next due time after it.
        self._claimed_at = 0.0

    @classmethod
    def from_url(cls, url: str, queue_name: str, **kwargs: Any) -> SQLiteBackend:
        """A backend for ``sqlite:///relative.db``, ``sqlite:////abs.db`` or ``sqlite://``.

        Args:
            url: The URL; query parameters ``synchronous``, ``busy_timeout`` (ms) and
                ``poll_interval`` (seconds) are options.
            queue_name: The queue's name.
            **kwargs: The same options; they win over the URL's.

        Raises:
            ConfigurationError: For an invalid URL or option.
        """
        return cls(queue_name, SQLiteSettings.from_url(url, **kwargs))

    def describe(self) -> dict[str, Any]:
        """Facts for displays."""
        return {
            "engine": "sqlite",
            "queue": self.queue_name,
            "path": str(self.settings.path),
            "sqlite_version": sqlite3.sqlite_version,
        }

    # Lifecycle

    async def connect(self) -> None:
        """Start the database thread, create or migrate the schema. Idempotent."""
        if self._thread is not None:
            return
        settings = self.settings
        thread = DatabaseThread(
            functools.partial(open_connection, settings),
            name=f"conveyor-sqlite-{self.queue_name}",
        )
        self._thread = thread
        try:
            await self._run(functools.partial(migrate, queries=self._queries))
            watch_conn = await self._run(lambda _conn: open_watcher(settings))
        except BaseException:
            self._thread = None
            await thread.stop()
            raise
        self._jobs.owners.forget()  # rows remembered before may have been dropped since
        doorbell = Doorbell.for_database(settings.path) if settings.wakeup == "socket" else None
        checkpoints = Checkpoints(settings.path, f"conveyor-sqlite-checkpoints-{self.queue_name}")
        # A backend dropped without disconnect() must not leave its threads, file and socket
        # behind.
        self._finalizer = weakref.finalize(self, _release, thread, checkpoints, doorbell)
        self._checkpoints = checkpoints
        self._watch_conn = watch_conn
        self._doorbell = doorbell
        self._watcher = ChangeWatcher(
            functools.partial(read_data_version, watch_conn), settings.poll_interval, doorbell
        )

    async def disconnect(self) -> None:
        """Release waiters, finish submitted operations and close the connections.

        Idempotent.
        """
        thread, self._thread = self._thread, None
        watcher, self._watcher = self._watcher, None
        doorbell, self._doorbell = self._doorbell, None
        checkpoints, self._checkpoints = self._checkpoints, None
        watch_conn, self._watch_conn = self._watch_conn, None
        if watcher is not None:
            await watcher.close()
        if watch_conn is not None:
            watch_conn.close()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if thread is not None:
            await thread.stop()
        if checkpoints is not None:
            await checkpoints.stop()
        if doorbell is not None:
            doorbell.close()  # after the thread: the thread rings with it

    async def drop(self) -> None:
        """Delete every row of this queue from the file, then disconnect (for tests)."""
        if self._thread is not None:
            await self._run(self._records.drop)
        await self.disconnect()

    async def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        thread = self._thread
        if thread is None:
            raise BackendError(self.name, "not connected: await connect() first")
        try:
            result = await thread.call(operation)
        except sqlite3.Error as exc:
            raise BackendError(self.name, f"{exc} (database {self.settings.path})", exc) from exc
        if self._checkpoints is not None:
            self._checkpoints.used()
        return result

    async def _write(
        self,
        operation: Callable[[sqlite3.Connection], T],
        wakes: Callable[[T], tuple[str, ...]],
    ) -> T:
        """Run a writing operation, then wake the waiters of the channels ``wakes(result)``
        names: other processes' right after the commit, from the database thread, and
        this backend's own in this process."""
        doorbell = self._doorbell

        def write_and_ring(conn: sqlite3.Connection) -> T:
            result = operation(conn)
            channels = wakes(result)
            if channels and doorbell is not None:
                doorbell.ring(channels)
            return result

        result = await self._run(write_and_ring)
        if self._watcher is not None:
            for channel in wakes(result):
                self._watcher.notify(channel)
        return result

    # Jobs

    async def enqueue(self, jobs: Sequence[NewJob]) -> list[bool]:
        """Insert jobs; see :meth:`conveyor.backends.base.Backend.enqueue`."""
        if not jobs:
            return []
        return await self._write(
            functools.partial(self._jobs.enqueue, jobs=list(jobs), now=time.time()),
            lambda inserted: ("work",) if any(inserted) else (),
        )

    async def claim(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Claim jobs; see :meth:`conveyor.backends.base.Backend.claim`."""
        rows = await self._run(
            functools.partial(
                self._jobs.claim,
                worker_id=worker_id,
                limit=limit,
                lease_s=lease_s,
                now=now,
                vouch=vouch,
            )
        )
        self._claimed_at = max(self._claimed_at, now)
        return rows

    async def wait_for_work(self, timeout: float) -> None:
        """Return on a new or re-queued job, another process's commit, or the next due time.

        Jobs due by the latest claim of this backend were already seen by that claim (taken,
        or held back by their group); only a job due after it shortens the wait, so a group
        that is busy does not make the caller spin.
        """
        if timeout <= 0:
            return
        next_due = await self._run(functools.partial(self._jobs.next_due, after=self._claimed_at))
        if next_due is not None:
            timeout = min(timeout, next_due - time.time() + _DUE_SLACK)
        await self._watching().wait("work", timeout)

    async def renew(
        self,
        worker_id: str,
        leases: Sequence[Lease],
        lease_s: float,
        now: float,
        *,
        vouch: bool = True,
    ) -> Renewal:
        """Renew the leases still held; see :meth:`conveyor.backends.base.Backend.renew`."""
        if not leases:
            return Renewal()
        return await self._run(
            functools.partial(self._jobs.renew, leases=list(leases), lease_s=lease_s, now=now)
        )

    async def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        """Apply transitions; see :meth:`conveyor.backends.base.Backend.finish`."""
        if not transitions:
            return []
        return await self._write(
            functools.partial(self._jobs.finish, transitions=list(transitions), now=time.time()),
            _finished,
        )

    async def update(self, key: str, payload: Payload, token: str | None = None) -> bool:
        """Store a payload; see :meth:`conveyor.backends.base.Backend.update`."""
        return await self._write(
            functools.partial(
                self._jobs.update, key=key, payload=payload, token=token, now=time.time()
            ),
            lambda found: ("finish",) if found else (),
        )

    async def abort(self, key: str, payload: Payload, now: float) -> str | None:
        """Abort a job; see :meth:`conveyor.backends.base.Backend.abort`."""
        return await self._write(
            functools.partial(self._jobs.abort, key=key, payload=payload),
            lambda before: ("finish",) if before in ("queued", "active") else (),
        )

    async def recover(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Take over expired leases; see :meth:`conveyor.backends.base.Backend.recover`."""
        return await self._run(
            functools.partial(
                self._jobs.recover,
                worker_id=worker_id,
                limit=limit,
                lease_s=lease_s,
                now=now,
                vouch=vouch,
            )
        )

    async def expire_dead_leases(self, now: float) -> int:
        """End at once the leases of jobs whose owner process is known to be gone.

        Same host only (host name, boot and PID namespace, see :mod:`.owners`): the pid no
        longer exists, is a zombie, or belongs to a process started at another time. A
        lease whose owner may be alive (another host, or the process exists) is never
        touched, nor one that already ran out. The next :meth:`recover` takes the ended
        ones (see :class:`conveyor.backends.base.DetectsDeadOwners`).

        Returns:
            How many leases it ended.
        """
        return await self._run(functools.partial(self._jobs.expire_dead_leases, now=now))

    async def expire(self, now: float, limit: int) -> int:
        """Delete expired finished jobs and marks; see the protocol."""
        return await self._run(functools.partial(self._jobs.expire, now=now, limit=limit))

    # Reads

    async def get(self, keys: Sequence[str]) -> list[JobRow | None]:
        """Load jobs; see :meth:`conveyor.backends.base.Backend.get`."""
        return await self._run(functools.partial(self._records.get, keys=list(keys)))

    async def list_jobs(
        self, statuses: Sequence[str] | None, offset: int, limit: int
    ) -> list[JobRow]:
        """List jobs, newest first; see the protocol."""
        wanted = None if statuses is None else list(statuses)
        return await self._run(
            functools.partial(self._records.list_jobs, statuses=wanted, offset=offset, limit=limit)
        )

    async def count(self, statuses: Sequence[str]) -> dict[str, int]:
        """Count jobs by status; ``scheduled`` counts queued jobs not yet due."""
        return await self._run(
            functools.partial(self._records.count, statuses=list(statuses), now=time.time())
        )

    async def wait_for_finish(self, keys: Sequence[str], timeout: float) -> None:
        """Return when a job may have changed, or on timeout.

        Woken by this backend's own finishes, updates and aborts at once, and by any other
        connection's commit within ``poll_interval``.
        """
        await self._watching().wait("finish", timeout)

    def _watching(self) -> ChangeWatcher:
        if self._watcher is None:
            raise BackendError(self.name, "not connected: await connect() first")
        return self._watcher

    # Workers

    async def put_worker(self, worker_id: str, info: Payload, ttl_s: float) -> None:
        """Store a worker record; see the protocol."""
        await self._run(
            functools.partial(
                self._records.put_worker,
                worker_id=worker_id,
                info=info,
                ttl_s=ttl_s,
                now=time.time(),
            )
        )

    async def delete_worker(self, worker_id: str) -> None:
        """Remove a worker record."""
        await self._run(functools.partial(self._records.delete_worker, worker_id=worker_id))

    async def workers(self) -> dict[str, Payload]:
        """Live worker records, by worker id."""
        return await self._run(functools.partial(self._records.workers, now=time.time()))

    # Runs and logs

    async def list_runs(
        self, filters: RunFilter, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """List runs, newest first, and the total that match; see the protocol."""
        return await self._run(
            functools.partial(self._records.list_runs, filters=filters, offset=offset, limit=limit)
        )

    async def record_runs(self, starts: Sequence[RunRecord], ends: Sequence[RunEnd]) -> None:
        """Store another backend's runs in one transaction; see the protocol."""
        if starts or ends:
            await self._run(
                functools.partial(self._records.record_runs, starts=list(starts), ends=list(ends))
            )

    async def get_run(self, run_id: str) -> RunRecord | None:
        """One run, or None."""
        return await self._run(functools.partial(self._records.get_run, run_id=run_id))

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        """Store log lines of any number of runs in one transaction."""
        if lines:
            await self._run(functools.partial(self._records.append_logs, lines=list(lines)))

    async def finish_with_logs(
        self, transitions: Sequence[Transition], rows: Sequence[LogRow]
    ) -> list[bool]:
        """Store log lines (rows in LogLine's field order) and apply transitions in one
        transaction: one hop to the database thread and one commit instead of two.

        The lines are stored whether or not a transition is refused (they belong to their
        run); returns what :meth:`finish` returns. The worker's writer uses it (see
        :class:`conveyor.backends.base.FinishesWithLogs`).
        """
        return await self._write(
            functools.partial(
                self._finish_with_logs,
                transitions=list(transitions),
                rows=list(rows),
                now=time.time(),
            ),
            _finished,
        )

    def _finish_with_logs(
        self,
        conn: sqlite3.Connection,
        transitions: list[Transition],
        rows: list[LogRow],
        now: float,
    ) -> list[bool]:
        with immediate(conn):
            self._records.insert_log_rows(conn, rows)
            return self._jobs.apply_transitions(conn, transitions, now)

    async def read_logs(self, run_id: str, after_seq: int, limit: int) -> list[LogLine]:
        """A run's lines after a cursor, in ``seq`` order."""
        return await self._run(
            functools.partial(
                self._records.read_logs, run_id=run_id, after_seq=after_seq, limit=limit
            )
        )

    async def purge_runs(self, before_ms: int, limit: int) -> int:
        """Delete old finished runs and their logs; see the protocol."""
        return await self._run(
            functools.partial(self._records.purge_runs, before_ms=before_ms, limit=limit)
        )


def _finished(applied: list[bool]) -> tuple[str, ...]:
    # Any finish may free a group, not only a re-queue: wake claimers too.
    return ("finish", "work")


def _release(thread: DatabaseThread, checkpoints: Checkpoints, doorbell: Doorbell | None) -> None:
    """What a backend collected without disconnect() leaves: its threads and its socket."""
    thread.stop_soon()
    checkpoints.stop_soon()
    if doorbell is not None:
        doorbell.close()
