"""Reads of jobs, and the run, log and worker records of the SQLite backend.

Like :mod:`.operations`, each function is one hop to the database thread and one
transaction; semantics follow :class:`conveyor.backends.memory.MemoryBackend`.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from conveyor.backends.base import JobRow, LogLine, LogRow, Payload, RunEnd, RunFilter, RunRecord
from conveyor.backends.sqlite.operations import immediate, job_row, snapshot
from conveyor.backends.sqlite.sql import statements

_RUN_FILTERS = tuple(f.name for f in dataclasses.fields(RunFilter))


def run_record(row: Sequence[Any]) -> RunRecord:
    """A :class:`RunRecord` from the columns of the ``list_runs`` and ``get_run`` queries."""
    run_id, key, function, attempt, worker_id, status, started_ms, finished_ms, error, detail = row
    return RunRecord(
        run_id=str(run_id),
        key=key,
        function=function,
        attempt=attempt,
        worker_id=worker_id,
        status=status,
        started_ms=started_ms,
        finished_ms=finished_ms,
        error=error,
        detail=detail,
    )


class RecordOperations:
    """Reads of jobs, and everything about runs, logs and workers, for one queue.

    Args:
        queue: The queue name.
        queries: The named queries of ``queries.sql``.
    """

    def __init__(self, queue: str, queries: dict[str, str]) -> None:
        self.queue = queue
        self.q = queries

    def get(self, conn: sqlite3.Connection, keys: Sequence[str]) -> list[JobRow | None]:
        """Jobs by key, in order."""
        if not keys:
            return []
        params = {"queue": self.queue, "keys": json.dumps(list(keys))}
        found = {row[0]: row for row in conn.execute(self.q["get_jobs"], params)}
        return [job_row(found[key]) if key in found else None for key in keys]

    def list_jobs(
        self, conn: sqlite3.Connection, statuses: Sequence[str] | None, offset: int, limit: int
    ) -> list[JobRow]:
        """Jobs with one of ``statuses`` (all when None), newest first."""
        offset, limit = max(offset, 0), max(limit, 0)
        if statuses is None:
            params = {"queue": self.queue, "offset": offset, "limit": limit}
            return [job_row(row) for row in conn.execute(self.q["list_jobs"], params)]
        # Each status's newest (offset + limit) from its index, merged: a page costs the
        # same with a million queued jobs as with ten (SQL would sort every match).
        with snapshot(conn):
            candidates: list[tuple[int, int]] = []
            for status in dict.fromkeys(statuses):
                params = {"queue": self.queue, "status": status, "limit": offset + limit}
                candidates += conn.execute(self.q["newest_with_status"], params).fetchall()
            candidates.sort(reverse=True)
            page = [rowid for _, rowid in candidates[offset : offset + limit]]
            if not page:
                return []
            params = {"rowids": json.dumps(page)}
            found = {row[0]: row[1:] for row in conn.execute(self.q["jobs_by_rowid"], params)}
        return [job_row(found[rowid]) for rowid in page if rowid in found]

    def count(
        self, conn: sqlite3.Connection, statuses: Sequence[str], now: float
    ) -> dict[str, int]:
        """How many jobs have each status; ``scheduled``: queued jobs not yet due."""
        out = dict.fromkeys(statuses, 0)
        with snapshot(conn):
            for status in out:
                if status == "scheduled":
                    params: dict[str, Any] = {"queue": self.queue, "now": now}
                    (out[status],) = conn.execute(self.q["count_scheduled"], params).fetchone()
                else:
                    params = {"queue": self.queue, "status": status}
                    (out[status],) = conn.execute(self.q["count_status"], params).fetchone()
        return out

    def put_worker(
        self, conn: sqlite3.Connection, worker_id: str, info: Payload, ttl_s: float, now: float
    ) -> None:
        """Store a worker's record and forget the queue's workers that expired."""
        with immediate(conn):
            conn.execute(self.q["forget_dead_workers"], {"queue": self.queue, "now": now})
            params = {"queue": self.queue, "worker_id": worker_id, "info": info}
            conn.execute(self.q["put_worker"], {**params, "expire_at": now + ttl_s})

    def delete_worker(self, conn: sqlite3.Connection, worker_id: str) -> None:
        """Remove a worker's record."""
        conn.execute(self.q["delete_worker"], {"queue": self.queue, "worker_id": worker_id})

    def workers(self, conn: sqlite3.Connection, now: float) -> dict[str, Payload]:
        """Live workers' records, by worker id."""
        rows = conn.execute(self.q["live_workers"], {"queue": self.queue, "now": now})
        return {worker_id: info for worker_id, info in rows}

    def list_runs(
        self, conn: sqlite3.Connection, filters: RunFilter, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """Runs matching ``filters``, newest first, and how many match in all."""
        params: dict[str, Any] = {"queue": self.queue}
        fragments = []
        for name in _RUN_FILTERS:
            value = getattr(filters, name)
            if value is not None:
                params[name] = value
                fragments.append(self.q[f"run_filter_{name}"])
        where = " ".join(fragments)
        page_sql = self.q["list_runs"].replace("/* filters */", where)
        count_sql = self.q["count_runs"].replace("/* filters */", where)
        with snapshot(conn):
            page = conn.execute(
                page_sql, {**params, "offset": max(offset, 0), "limit": max(limit, 0)}
            ).fetchall()
            (total,) = conn.execute(count_sql, params).fetchone()
        return [run_record(row) for row in page], int(total)

    def get_run(self, conn: sqlite3.Connection, run_id: str) -> RunRecord | None:
        """One run, or None."""
        params = {"queue": self.queue, "run_id": run_id}
        row = conn.execute(self.q["get_run"], params).fetchone()
        return None if row is None else run_record(row)

    def record_runs(
        self, conn: sqlite3.Connection, starts: Sequence[RunRecord], ends: Sequence[RunEnd]
    ) -> None:
        """Store runs created by another backend, then end runs; one transaction."""
        with immediate(conn):
            conn.executemany(
                self.q["record_run_start"],
                [{"queue": self.queue, **dataclasses.asdict(run)} for run in starts],
            )
            conn.executemany(
                self.q["record_run_end"],
                [{"queue": self.queue, **dataclasses.asdict(end)} for end in ends],
            )

    def append_logs(self, conn: sqlite3.Connection, lines: Sequence[LogLine]) -> None:
        """Store log lines of any number of runs in one transaction."""
        if not lines:
            return
        queue = self.queue
        rows = [(queue, ln.run_id, ln.seq, ln.ts, ln.level, ln.message, ln.extra) for ln in lines]
        with immediate(conn):
            conn.executemany(self.q["append_log"], rows)

    def insert_log_rows(self, conn: sqlite3.Connection, rows: Sequence[LogRow]) -> None:
        """Store log lines given as rows (LogLine's fields in order), inside the caller's
        write transaction.
        """
        head = (self.queue,)
        conn.executemany(self.q["append_log"], [head + row for row in rows])

    def read_logs(
        self, conn: sqlite3.Connection, run_id: str, after_seq: int, limit: int
    ) -> list[LogLine]:
        """A run's lines with ``seq > after_seq``, in ``seq`` order."""
        params = {
            "queue": self.queue,
            "run_id": run_id,
            "after_seq": after_seq,
            "limit": max(limit, 0),
        }
        return [
            LogLine(str(rid), seq, ts, level, message, extra)
            for rid, seq, ts, level, message, extra in conn.execute(self.q["read_logs"], params)
        ]

    def purge_runs(self, conn: sqlite3.Connection, before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` finished runs started before ``before_ms``, with their logs."""
        params: dict[str, Any] = {"queue": self.queue}
        with immediate(conn):
            selected = conn.execute(
                self.q["purgeable_runs"],
                {**params, "before_ms": before_ms, "limit": max(limit, 0)},
            ).fetchall()
            if not selected:
                return 0
            params["run_ids"] = json.dumps([run_id for run_id, _ in selected])
            params["log_ids"] = json.dumps([public_id for _, public_id in selected])
            conn.execute(self.q["delete_logs_of_runs"], params)
            conn.execute(self.q["delete_runs"], params)
        return len(selected)

    def drop(self, conn: sqlite3.Connection) -> None:
        """Delete every row of this queue, in every table."""
        with immediate(conn):
            for statement in statements(self.q["drop_queue"]):
                conn.execute(statement, {"queue": self.queue})
