"""The job operations of the SQLite backend, each one transaction on the connection.

These functions run on the backend's database thread (see :mod:`.thread`): one call is one
hop and one transaction, whatever the batch size. Every read-then-write transaction starts
with ``BEGIN IMMEDIATE``, which takes the write lock up front (waiting up to
``busy_timeout``); a deferred ``BEGIN`` that later writes fails at once with
``SQLITE_BUSY`` when another process committed in between, whatever the timeout.
Semantics follow :class:`conveyor.backends.memory.MemoryBackend`, the reference.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from conveyor.backends.base import JobRow, NewJob, Transition

_INCOMPLETE = frozenset({"queued", "active", "aborting"})


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: ``BEGIN IMMEDIATE``, then ``COMMIT``, or ``ROLLBACK`` on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """A read transaction, so that several reads see one consistent state."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def job_row(row: Sequence[Any]) -> JobRow:
    """A :class:`JobRow` from the columns the job queries select, in the dataclass's order.

    Args:
        row: ``key, payload, status, attempts, started_ms, touched_ms, worker_id, run_id``.
    """
    key, payload, status, attempts, started_ms, touched_ms, worker_id, run_id = row
    return JobRow(
        key=key,
        payload=payload,
        status=status,
        attempts=attempts,
        started_ms=started_ms,
        touched_ms=touched_ms,
        worker_id=worker_id,
        run_id=None if run_id is None else str(run_id),
    )


class JobOperations:
    """Operations that change jobs, for one queue.

    Args:
        queue: The queue name (every row carries it).
        queries: The named queries of ``queries.sql``.
    """

    def __init__(self, queue: str, queries: dict[str, str]) -> None:
        self.queue = queue
        self.q = queries

    def _next_seq(self, conn: sqlite3.Connection) -> int:
        (seq,) = conn.execute(self.q["max_seq"], {"queue": self.queue}).fetchone()
        return int(seq) + 1

    def enqueue(self, conn: sqlite3.Connection, jobs: Sequence[NewJob], now: float) -> list[bool]:
        """Insert jobs; see :meth:`conveyor.backends.base.Backend.enqueue`."""
        out: list[bool] = []
        queue, q = self.queue, self.q
        with immediate(conn):
            seq = self._next_seq(conn)
            for new in jobs:
                found = conn.execute(q["job_status"], {"queue": queue, "key": new.key}).fetchone()
                if found is not None and found[0] in _INCOMPLETE:
                    out.append(False)
                    continue
                if new.once:
                    mark = {"queue": queue, "token": new.once}
                    expiry = conn.execute(q["mark_expiry"], mark).fetchone()
                    if expiry is not None and expiry[0] > now:
                        out.append(False)
                        continue
                    conn.execute(q["put_mark"], {**mark, "expire_at": now + new.once_ttl})
                conn.execute(
                    q["insert_job"],
                    {
                        "queue": queue,
                        "key": new.key,
                        "function": new.function,
                        "payload": new.payload,
                        "priority": new.priority,
                        "due": new.due,
                        "group_key": new.group_key,
                        "seq": seq,
                    },
                )
                seq += 1
                out.append(True)
        return out

    def claim(
        self, conn: sqlite3.Connection, worker_id: str, limit: int, lease_s: float, now: float
    ) -> list[JobRow]:
        """Claim jobs; see :meth:`conveyor.backends.base.Backend.claim`."""
        if limit <= 0:
            return []
        now_ms = int(now * 1000)
        taken: list[JobRow] = []
        with immediate(conn):
            for key, function, attempts, payload in self._claimable(conn, limit, now):
                params = {
                    "queue": self.queue,
                    "key": key,
                    "function": function,
                    "attempt": attempts + 1,
                    "worker_id": worker_id,
                    "now_ms": now_ms,
                }
                run_id = conn.execute(self.q["insert_run"], params).lastrowid
                del params["function"]
                params.update(run_id=run_id, lease_until=now + lease_s)
                conn.execute(self.q["activate_job"], params)
                taken.append(
                    JobRow(
                        key, payload, "active", attempts + 1, now_ms, now_ms, worker_id, str(run_id)
                    )
                )
        return taken

    def _claimable(
        self, conn: sqlite3.Connection, limit: int, now: float
    ) -> list[tuple[str, str, int, Any]]:
        # Walk the claim index one priority at a time (a manual skip-scan): within a
        # priority, due jobs come first in (due, seq) order and the scan stops at the first
        # job not yet due, so scheduled jobs never cost a claim anything.
        picked: list[tuple[str, str, int, Any]] = []
        groups: set[str] = set()
        priority: float | int = float("-inf")
        while len(picked) < limit:
            params: dict[str, Any] = {"queue": self.queue, "after": priority}
            (priority,) = conn.execute(self.q["next_priority"], params).fetchone()
            if priority is None:
                break
            params = {"queue": self.queue, "priority": priority, "now": now}
            cursor = conn.execute(self.q["claim_candidates"], params)
            try:
                for key, function, attempts, group_key, payload in cursor:
                    if group_key is not None:
                        if group_key in groups:
                            continue  # at most one job per group per claim
                        groups.add(group_key)
                    picked.append((key, function, attempts, payload))
                    if len(picked) >= limit:
                        break
            finally:
                cursor.close()
        return picked

    def next_due(self, conn: sqlite3.Connection, after: float) -> float | None:
        """The earliest ``due`` among queued jobs due after ``after``, if any."""
        (due,) = conn.execute(self.q["next_due"], {"queue": self.queue, "after": after}).fetchone()
        return None if due is None else float(due)

    def renew(
        self,
        conn: sqlite3.Connection,
        worker_id: str,
        keys: Sequence[str],
        lease_s: float,
        now: float,
    ) -> list[str]:
        """Renew leases; see :meth:`conveyor.backends.base.Backend.renew`."""
        if not keys:
            return []
        params = {"queue": self.queue, "keys": json.dumps(list(keys))}
        with immediate(conn):
            conn.execute(
                self.q["renew_leases"],
                {
                    **params,
                    "worker_id": worker_id,
                    "lease_until": now + lease_s,
                    "now_ms": int(now * 1000),
                },
            )
            statuses = dict(conn.execute(self.q["job_statuses"], params).fetchall())
        return [key for key in keys if statuses.get(key, "aborting") == "aborting"]

    def finish(self, conn: sqlite3.Connection, transitions: Sequence[Transition]) -> None:
        """Apply transitions; see :meth:`conveyor.backends.base.Backend.finish`."""
        with immediate(conn):
            self.apply_transitions(conn, transitions)

    def apply_transitions(
        self, conn: sqlite3.Connection, transitions: Sequence[Transition]
    ) -> None:
        """The statements of :meth:`finish`, inside the caller's write transaction."""
        queue, q = self.queue, self.q
        seq: int | None = None
        for t in transitions:
            if t.run is not None:
                run = t.run
                conn.execute(
                    q["end_run"],
                    {
                        "queue": queue,
                        "run_id": run.run_id,
                        "status": run.status,
                        "finished_ms": run.finished_ms,
                        "error": run.error,
                        "detail": run.detail,
                    },
                )
            job = {"queue": queue, "key": t.key}
            if t.status == "queued":
                seq = self._next_seq(conn) if seq is None else seq + 1
                params = {**job, "payload": t.payload, "due": t.due, "seq": seq}
                conn.execute(q["requeue_job"], params)
            elif t.delete:
                conn.execute(q["delete_job"], job)
            else:
                params = {**job, "payload": t.payload, "status": t.status}
                conn.execute(q["end_job"], {**params, "expire_at": t.expire_at})

    def update(self, conn: sqlite3.Connection, key: str, payload: Any, now: float) -> bool:
        """Store a payload; see :meth:`conveyor.backends.base.Backend.update`."""
        params = {"queue": self.queue, "key": key, "payload": payload, "now_ms": int(now * 1000)}
        return conn.execute(self.q["update_payload"], params).rowcount > 0

    def abort(self, conn: sqlite3.Connection, key: str, payload: Any) -> str | None:
        """Abort a job; see :meth:`conveyor.backends.base.Backend.abort`."""
        job = {"queue": self.queue, "key": key}
        with immediate(conn):
            found = conn.execute(self.q["job_status"], job).fetchone()
            if found is None:
                return None
            before: str = found[0]
            after = {"queued": "aborted", "active": "aborting"}.get(before)
            if after is not None:
                params = {**job, "status": after, "payload": payload}
                conn.execute(self.q["set_status_payload"], params)
        return before

    def recover(
        self, conn: sqlite3.Connection, worker_id: str, limit: int, lease_s: float, now: float
    ) -> list[JobRow]:
        """Take over expired leases; see :meth:`conveyor.backends.base.Backend.recover`."""
        if limit <= 0:
            return []
        taken: list[JobRow] = []
        with immediate(conn):
            params = {"queue": self.queue, "now": now, "limit": limit}
            rows = conn.execute(self.q["expired_leases"], params).fetchall()
            for key, payload, status, attempts, started_ms, touched_ms, run_id in rows:
                lease = {"queue": self.queue, "key": key, "lease_until": now + lease_s}
                conn.execute(self.q["take_lease"], {**lease, "worker_id": worker_id})
                row = (key, payload, status, attempts, started_ms, touched_ms, worker_id, run_id)
                taken.append(job_row(row))
        return taken

    def expire(self, conn: sqlite3.Connection, now: float, limit: int) -> int:
        """Delete expired finished jobs and expired marks; returns the number of jobs."""
        params = {"queue": self.queue, "now": now}
        with immediate(conn):
            deleted = conn.execute(self.q["expire_jobs"], {**params, "limit": limit}).rowcount
            conn.execute(self.q["expire_marks"], params)
        return max(deleted, 0)
