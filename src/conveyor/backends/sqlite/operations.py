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
import time
from collections.abc import Iterator, Sequence
from typing import Any

from conveyor.backends.base import JobRow, Lease, NewJob, Renewal, Transition
from conveyor.backends.sqlite.owners import OwnerRecords, is_gone

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


def _stored_token(token: str) -> int | None:
    """A fencing token as the jobs table stores it; None for a string this backend never
    gave (such a token holds no lease).
    """
    try:
        value = int(token)
    except ValueError:
        return None
    return value if str(value) == token else None


def _lease_object(pairs: set[tuple[str, int]]) -> str:
    """The JSON object ``{key: token, ...}`` that the lease queries read with json_each.

    A key given with two tokens keeps both entries (a dict would keep one); at most one of
    them can be held.
    """
    by_key = dict(pairs)
    if len(by_key) == len(pairs):
        return json.dumps(by_key)
    return "{" + ",".join(f"{json.dumps(key)}:{token}" for key, token in pairs) + "}"


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
        self.owners = OwnerRecords(queue, queries)

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
                        "order_due": max(new.due, now),  # due now: by its enqueue time
                        "group_key": new.group_key,
                        "seq": seq,
                    },
                )
                seq += 1
                out.append(True)
        return out

    def claim(
        self,
        conn: sqlite3.Connection,
        worker_id: str,
        limit: int,
        lease_s: float,
        now: float,
        vouch: bool = True,
    ) -> list[JobRow]:
        """Claim jobs; see :meth:`conveyor.backends.base.Backend.claim`."""
        if limit <= 0:
            return []
        now_ms = int(now * 1000)
        taken: list[JobRow] = []
        # Most claims of an idle worker find nothing (every datagram and poll that woke it
        # claims): those read only, and leave the write lock to the writers that have work.
        # A job committed after this read wakes the caller's next wait.
        with snapshot(conn):
            if not self._claimable(conn, 1, now):
                return []
        # Without vouch no owner is recorded: a lease of an unknown owner is never ended early.
        owner = self.owners.recorded(worker_id) if vouch else None
        inserted = None
        with immediate(conn):
            picked = self._claimable(conn, limit, now)
            if picked and owner is None and vouch:
                owner = inserted = self.owners.insert(conn, worker_id)
            for key, function, attempts, payload in picked:
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
                params.update(run_id=run_id, lease_until=now + lease_s, owner=owner)
                conn.execute(self.q["activate_job"], params)
                token = str(run_id)  # activate_job makes the run id the fencing token
                row = JobRow(key, payload, "active", attempts + 1, now_ms, now_ms, worker_id)
                row.run_id = row.token = token
                taken.append(row)
        if inserted is not None:
            self.owners.remember(worker_id, inserted)  # committed
        return taken

    def _claimable(
        self, conn: sqlite3.Connection, limit: int, now: float
    ) -> list[tuple[str, str, int, Any]]:
        # Walk the claim index one priority at a time (a manual skip-scan): within a
        # priority, jobs come in (order_due, seq) order, where order_due is the later of due
        # and the time the job was enqueued or re-queued. A scheduled job is claimable from
        # order_due on; any other job at once (due <= now), but its order_due, a time of
        # writing, is not after this host's clock. So the scan stops at the later of now
        # and the clock, and scheduled jobs further on never cost a claim anything. (The
        # clock counts for a caller whose `now` lags behind the enqueue.)
        horizon = max(now, time.time())
        picked: list[tuple[str, str, int, Any]] = []
        groups: set[str] = set()
        priority: float | int = float("-inf")
        while len(picked) < limit:
            params: dict[str, Any] = {"queue": self.queue, "after": priority}
            (priority,) = conn.execute(self.q["next_priority"], params).fetchone()
            if priority is None:
                break
            params = {"queue": self.queue, "priority": priority, "now": now, "horizon": horizon}
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
        leases: Sequence[Lease],
        lease_s: float,
        now: float,
    ) -> Renewal:
        """Renew leases; see :meth:`conveyor.backends.base.Backend.renew`."""
        # A string this backend never gave as a token holds nothing: None, reported lost.
        pairs = [(lease.key, _stored_token(lease.token)) for lease in leases]
        known = {(key, token) for key, token in pairs if token is not None}
        statuses: dict[tuple[str, int | None], str] = {}
        all_held = False
        if known:
            params = {"queue": self.queue, "leases": _lease_object(known)}
            with immediate(conn):
                renewed = conn.execute(
                    self.q["renew_leases"],
                    {**params, "lease_until": now + lease_s, "now_ms": int(now * 1000)},
                ).rowcount
                # Usually every lease is held: then only the aborting ones need looking up.
                all_held = renewed == len(known)
                query = self.q["aborting_leases" if all_held else "held_leases"]
                for key, token, status in conn.execute(query, params):
                    statuses[key, token] = status
        renewal = Renewal()
        for key, token in pairs:
            status = statuses.get(
                (key, token), "active" if all_held and token is not None else None
            )
            if status is None:
                renewal.lost.append(key)
            elif status == "aborting":
                renewal.aborting.append(key)
        return renewal

    def finish(
        self, conn: sqlite3.Connection, transitions: Sequence[Transition], now: float
    ) -> list[bool]:
        """Apply transitions; see :meth:`conveyor.backends.base.Backend.finish`."""
        with immediate(conn):
            return self.apply_transitions(conn, transitions, now)

    def apply_transitions(
        self, conn: sqlite3.Connection, transitions: Sequence[Transition], now: float
    ) -> list[bool]:
        """The statements of :meth:`finish`, inside the caller's write transaction.

        The job's statement carries the fencing check, so it runs first: a refused
        transition stores nothing, not its run's end either.
        """
        queue, q = self.queue, self.q
        seq: int | None = None
        applied: list[bool] = []
        for t in transitions:
            token = None if t.token is None else _stored_token(t.token)
            if t.token is not None and token is None:
                applied.append(False)  # not a token this backend gave: it holds nothing
                continue
            job = {"queue": queue, "key": t.key, "token": token}
            if t.status == "queued":
                seq = self._next_seq(conn) if seq is None else seq + 1
                params = {**job, "payload": t.payload, "due": t.due, "seq": seq}
                # due now (0 or past): sorts by the re-queue time, behind jobs already due
                params["order_due"] = max(t.due, now)
                changed = conn.execute(q["requeue_job"], params).rowcount
            elif t.delete:
                changed = conn.execute(q["delete_job"], job).rowcount
            else:
                params = {**job, "payload": t.payload, "status": t.status}
                changed = conn.execute(q["end_job"], {**params, "expire_at": t.expire_at}).rowcount
            if changed <= 0 and t.token is not None:
                applied.append(False)  # a stale owner's write: nothing of it is stored
                continue
            applied.append(changed > 0)
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
        return applied

    def update(
        self, conn: sqlite3.Connection, key: str, payload: Any, token: str | None, now: float
    ) -> bool:
        """Store a payload; see :meth:`conveyor.backends.base.Backend.update`."""
        stored = None if token is None else _stored_token(token)
        if token is not None and stored is None:
            return False  # not a token this backend gave
        params = {
            "queue": self.queue,
            "key": key,
            "payload": payload,
            "token": stored,
            "now_ms": int(now * 1000),
        }
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
        self,
        conn: sqlite3.Connection,
        worker_id: str,
        limit: int,
        lease_s: float,
        now: float,
        vouch: bool = True,
    ) -> list[JobRow]:
        """Take over expired leases; see :meth:`conveyor.backends.base.Backend.recover`."""
        if limit <= 0:
            return []
        taken: list[JobRow] = []
        owner = self.owners.recorded(worker_id) if vouch else None  # see claim
        inserted = None
        with immediate(conn):
            params = {"queue": self.queue, "now": now, "limit": limit}
            rows = conn.execute(self.q["expired_leases"], params).fetchall()
            if not rows:
                return taken
            if owner is None and vouch:
                owner = inserted = self.owners.insert(conn, worker_id)
            token = self._reserve_ids(conn, len(rows))
            for key, payload, status, attempts, started_ms, touched_ms, run_id in rows:
                lease = {"queue": self.queue, "key": key, "lease_until": now + lease_s}
                lease.update(worker_id=worker_id, token=token, owner=owner)
                conn.execute(self.q["take_lease"], lease)
                row = (key, payload, status, attempts, started_ms, touched_ms, worker_id, run_id)
                job = job_row(row)
                job.token = str(token)
                taken.append(job)
                token += 1
        if inserted is not None:
            self.owners.remember(worker_id, inserted)  # committed
        return taken

    def expire_dead_leases(self, conn: sqlite3.Connection, now: float) -> int:
        """End the leases whose owner on this host is gone; see :mod:`.owners`.

        The owners are judged outside any transaction: a gone process stays gone and an
        owner id is never given again, while a job taken over meanwhile points at its new
        owner. Only when one is gone does a write transaction end its jobs' leases and
        delete the gone owners that no running job points at any more.

        Returns:
            How many leases were ended.
        """
        me = self.owners.me()
        params: dict[str, Any] = {"queue": self.queue, "host": me.host}
        gone = [
            owner
            for owner, pid, started in conn.execute(self.q["owners_on_host"], params).fetchall()
            if (pid, started) != (me.pid, me.started) and is_gone(pid, started)
        ]
        if not gone:
            return 0
        params = {"queue": self.queue, "owners": json.dumps(gone)}
        with immediate(conn):
            ended = conn.execute(self.q["end_dead_leases"], {**params, "now": now}).rowcount
            conn.execute(self.q["forget_gone_owners"], params)
        return max(ended, 0)

    def _reserve_ids(self, conn: sqlite3.Connection, count: int) -> int:
        """Take ``count`` ids that no run and no token will ever get; returns the first."""
        params = {"count": count}
        if conn.execute(self.q["reserve_ids"], params).rowcount == 0:
            conn.execute(self.q["first_ids"], params)
        (last,) = conn.execute(self.q["last_reserved_id"]).fetchone()
        return int(last) - count + 1

    def expire(self, conn: sqlite3.Connection, now: float, limit: int) -> int:
        """Delete expired finished jobs and expired marks; returns the number of jobs."""
        params = {"queue": self.queue, "now": now}
        with immediate(conn):
            deleted = conn.execute(self.q["expire_jobs"], {**params, "limit": limit}).rowcount
            conn.execute(self.q["expire_marks"], params)
        return max(deleted, 0)
