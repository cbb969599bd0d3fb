"""The in-memory backend: the reference implementation and a test double for users' tests.

Everything lives in one :class:`MemoryStore` per backend, so two queues never share state
unless the caller passes the same store. Each operation runs without awaiting in the middle,
which makes it atomic on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import time
from collections.abc import Sequence
from typing import Any

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

_INCOMPLETE = frozenset({"queued", "active", "aborting"})
_TERMINAL = frozenset({"complete", "failed", "aborted"})


@dataclasses.dataclass(slots=True)
class _Job:
    row: JobRow
    function: str
    priority: int
    due: float
    group_key: str | None
    seq: int
    lease_until: float = 0.0
    expire_at: float | None = None
    token: str | None = None

    def held_by(self, token: str) -> bool:
        return self.token == token and self.row.status in ("active", "aborting")


@dataclasses.dataclass
class MemoryStore:
    """The state of one in-memory queue. Share one store to share the queue."""

    jobs: dict[str, _Job] = dataclasses.field(default_factory=dict)
    ready: list[tuple[int, float, int, str]] = dataclasses.field(default_factory=list)
    runs: dict[str, RunRecord] = dataclasses.field(default_factory=dict)
    logs: dict[str, list[LogLine]] = dataclasses.field(default_factory=dict)
    #: Batches of lines (as rows) as they were appended, not yet sorted into ``logs`` by
    #: run: a write costs one append per batch, and the next read of logs sorts in what has
    #: arrived since.
    unsorted_logs: list[list[LogRow]] = dataclasses.field(default_factory=list)
    workers: dict[str, tuple[Payload, float]] = dataclasses.field(default_factory=dict)
    marks: dict[str, float] = dataclasses.field(default_factory=dict)
    counter: itertools.count[int] = dataclasses.field(default_factory=lambda: itertools.count(1))
    work: asyncio.Condition | None = None
    changed: asyncio.Condition | None = None


class MemoryBackend:
    """A backend that keeps everything in this process's memory.

    Args:
        queue_name: The queue's name.
        store: The state to use; a new one by default.
    """

    name = "memory"
    capabilities = Capabilities(cross_process=False, durable=False)

    def __init__(self, queue_name: str, store: MemoryStore | None = None) -> None:
        self.queue_name = queue_name
        self.store = store or MemoryStore()

    @classmethod
    def from_url(cls, url: str, queue_name: str, **kwargs: Any) -> MemoryBackend:
        """A backend for ``memory://`` (the rest of the URL is ignored)."""
        return cls(queue_name, **kwargs)

    def _work(self) -> asyncio.Condition:
        if self.store.work is None:
            self.store.work = asyncio.Condition()
        return self.store.work

    def _changed(self) -> asyncio.Condition:
        if self.store.changed is None:
            self.store.changed = asyncio.Condition()
        return self.store.changed

    async def connect(self) -> None:
        """Nothing to open."""

    async def disconnect(self) -> None:
        """Nothing to close."""

    async def drop(self) -> None:
        """Forget everything in this backend's store."""
        store = self.store
        for table in (store.jobs, store.runs, store.logs, store.workers, store.marks):
            table.clear()
        store.ready.clear()
        store.unsorted_logs.clear()

    def describe(self) -> dict[str, Any]:
        """Facts for displays."""
        return {"engine": "memory", "queue": self.queue_name}

    async def _notify(self, condition: asyncio.Condition) -> None:
        async with condition:
            condition.notify_all()

    async def enqueue(self, jobs: Sequence[NewJob]) -> list[bool]:
        """Insert jobs; see :meth:`conveyor.backends.base.Backend.enqueue`."""
        now = time.time()
        out = []
        store = self.store
        for new in jobs:
            existing = store.jobs.get(new.key)
            if existing and existing.row.status in _INCOMPLETE:
                out.append(False)
                continue
            if new.once:
                expiry = store.marks.get(new.once)
                if expiry is not None and expiry > now:
                    out.append(False)
                    continue
                store.marks[new.once] = now + new.once_ttl
            seq = next(store.counter)
            store.jobs[new.key] = _Job(
                row=JobRow(key=new.key, payload=new.payload, status="queued"),
                function=new.function,
                priority=new.priority,
                due=new.due,
                group_key=new.group_key,
                seq=seq,
            )
            # Ordered by due time, where a job due now counts from its enqueue time.
            heapq.heappush(store.ready, (new.priority, max(new.due, now), seq, new.key))
            out.append(True)
        if any(out):
            await self._notify(self._work())
        return out

    def _active_groups(self) -> set[str]:
        return {
            j.group_key
            for j in self.store.jobs.values()
            if j.group_key is not None and j.row.status in ("active", "aborting")
        }

    async def claim(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Claim jobs; see :meth:`conveyor.backends.base.Backend.claim`."""
        store = self.store
        taken: list[JobRow] = []
        skipped: list[tuple[int, float, int, str]] = []
        busy_groups: set[str] | None = None
        while store.ready and len(taken) < limit:
            entry = heapq.heappop(store.ready)
            key = entry[3]
            job = store.jobs.get(key)
            if job is None or job.seq != entry[2] or job.row.status != "queued":
                continue  # stale heap entry
            if job.due > now:
                skipped.append(entry)
                continue
            if job.group_key is not None:
                if busy_groups is None:
                    busy_groups = self._active_groups()
                if job.group_key in busy_groups:
                    skipped.append(entry)
                    continue
                busy_groups.add(job.group_key)
            taken.append(self._activate(job, worker_id, lease_s, now))
        for entry in skipped:
            heapq.heappush(store.ready, entry)
        return taken

    def _activate(self, job: _Job, worker_id: str, lease_s: float, now: float) -> JobRow:
        row = job.row
        row.status = "active"
        row.attempts += 1
        row.started_ms = row.touched_ms = int(now * 1000)
        row.worker_id = worker_id
        row.run_id = job.token = str(next(self.store.counter))
        job.lease_until = now + lease_s
        self.store.runs[row.run_id] = RunRecord(
            run_id=row.run_id,
            key=row.key,
            function=job.function,
            attempt=row.attempts,
            worker_id=worker_id,
            status="running",
            started_ms=row.started_ms,
        )
        return dataclasses.replace(row, token=job.token)

    def _next_due(self) -> float | None:
        # Only jobs not yet due: a due job held back by its busy group waits for the finish
        # that frees the group (which notifies), not for a timer.
        now = time.time()
        jobs = self.store.jobs
        due = [jobs[k].due for *_, k in self.store.ready if k in jobs and jobs[k].due > now]
        return min(due) if due else None

    async def wait_for_work(self, timeout: float) -> None:
        """Wait for an enqueue or the next due time; see the protocol."""
        next_due = self._next_due()
        if next_due is not None:
            timeout = max(0.0, min(timeout, next_due - time.time()))
        if timeout <= 0:
            return
        condition = self._work()
        async with condition:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(condition.wait(), timeout)

    async def renew(
        self,
        worker_id: str,
        leases: Sequence[Lease],
        lease_s: float,
        now: float,
        *,
        vouch: bool = True,
    ) -> Renewal:
        """Renew leases; see the protocol."""
        renewal = Renewal()
        for lease in leases:
            job = self.store.jobs.get(lease.key)
            if job is None or not job.held_by(lease.token):
                renewal.lost.append(lease.key)
                continue
            job.lease_until = now + lease_s
            job.row.touched_ms = int(now * 1000)
            if job.row.status == "aborting":
                renewal.aborting.append(lease.key)
        return renewal

    async def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        """Apply transitions; see the protocol."""
        store = self.store
        requeued = False
        applied = []
        for t in transitions:
            job = store.jobs.get(t.key)
            if t.token is not None and (job is None or not job.held_by(t.token)):
                applied.append(False)  # a stale owner's write: nothing of it is stored
                continue
            if t.run is not None:
                self._end_run(t.run)
            applied.append(job is not None)
            if job is None:
                continue
            job.row.payload = t.payload
            job.row.status = t.status
            job.lease_until = 0.0
            job.token = None
            if t.status == "queued":
                job.due = t.due
                job.seq = next(store.counter)
                job.row.worker_id = None
                order = max(t.due, time.time())
                heapq.heappush(store.ready, (job.priority, order, job.seq, job.row.key))
                requeued = True
            elif t.delete:
                del store.jobs[t.key]
            else:
                job.expire_at = t.expire_at
        if requeued or any(t.status != "queued" for t in transitions):
            # A retry is claimable; a finished job may have freed its group.
            await self._notify(self._work())
        await self._notify(self._changed())
        return applied

    def _end_run(self, end: RunEnd) -> None:
        run = self.store.runs.get(end.run_id)
        if run is not None:
            run.status = end.status
            run.finished_ms = end.finished_ms
            run.error = end.error
            run.detail = end.detail

    async def update(self, key: str, payload: Payload, token: str | None = None) -> bool:
        """Store a payload; see the protocol."""
        job = self.store.jobs.get(key)
        if job is None or (token is not None and not job.held_by(token)):
            return False
        job.row.payload = payload
        job.row.touched_ms = int(time.time() * 1000)
        await self._notify(self._changed())
        return True

    async def abort(self, key: str, payload: Payload, now: float) -> str | None:
        """Abort a job; see the protocol."""
        job = self.store.jobs.get(key)
        if job is None:
            return None
        before = job.row.status
        if before == "queued":
            job.row.status = "aborted"
            job.row.payload = payload
            await self._notify(self._changed())
        elif before == "active":
            job.row.status = "aborting"
            job.row.payload = payload
        return before

    async def recover(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Take over expired leases; see the protocol."""
        taken: list[JobRow] = []
        for job in self.store.jobs.values():
            if len(taken) >= limit:
                break
            if job.row.status in ("active", "aborting") and job.lease_until < now:
                job.lease_until = now + lease_s
                job.row.worker_id = worker_id
                job.token = str(next(self.store.counter))
                taken.append(dataclasses.replace(job.row, token=job.token))
        return taken

    async def get(self, keys: Sequence[str]) -> list[JobRow | None]:
        """Load jobs; see the protocol."""
        out: list[JobRow | None] = []
        for key in keys:
            job = self.store.jobs.get(key)
            out.append(dataclasses.replace(job.row) if job else None)
        return out

    async def list_jobs(
        self, statuses: Sequence[str] | None, offset: int, limit: int
    ) -> list[JobRow]:
        """List jobs, newest first; see the protocol."""
        wanted = set(statuses) if statuses is not None else None
        jobs = [j for j in self.store.jobs.values() if wanted is None or j.row.status in wanted]
        jobs.sort(key=lambda j: j.seq, reverse=True)
        return [dataclasses.replace(j.row) for j in jobs[offset : offset + limit]]

    async def count(self, statuses: Sequence[str]) -> dict[str, int]:
        """Count jobs by status; see the protocol."""
        now = time.time()
        out = dict.fromkeys(statuses, 0)
        for job in self.store.jobs.values():
            status = job.row.status
            if status == "queued" and job.due > now and "scheduled" in out:
                out["scheduled"] += 1
            if status in out:
                out[status] += 1
        return out

    async def wait_for_finish(self, keys: Sequence[str], timeout: float) -> None:
        """Wait for a change; see the protocol."""
        condition = self._changed()
        async with condition:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(condition.wait(), timeout)

    async def expire(self, now: float, limit: int) -> int:
        """Delete expired finished jobs and marks; see the protocol."""
        store = self.store
        doomed = [
            key
            for key, job in store.jobs.items()
            if job.row.status in _TERMINAL and job.expire_at is not None and job.expire_at <= now
        ][:limit]
        for key in doomed:
            del store.jobs[key]
        for mark in [m for m, exp in store.marks.items() if exp <= now]:
            del store.marks[mark]
        return len(doomed)

    async def put_worker(self, worker_id: str, info: Payload, ttl_s: float) -> None:
        """Store a worker record; see the protocol."""
        self.store.workers[worker_id] = (info, time.time() + ttl_s)

    async def delete_worker(self, worker_id: str) -> None:
        """Remove a worker record."""
        self.store.workers.pop(worker_id, None)

    async def workers(self) -> dict[str, Payload]:
        """Live worker records."""
        now = time.time()
        return {wid: info for wid, (info, exp) in self.store.workers.items() if exp > now}

    async def list_runs(
        self, filters: RunFilter, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """List runs, newest first; see the protocol."""
        # The store keeps insertion order: it breaks ties of started_ms (ids are opaque).
        matching = [(i, r) for i, r in enumerate(self.store.runs.values()) if _matches(r, filters)]
        matching.sort(key=lambda pair: (pair[1].started_ms, pair[0]), reverse=True)
        runs = [r for _, r in matching]
        return [dataclasses.replace(r) for r in runs[offset : offset + limit]], len(runs)

    async def record_runs(self, starts: Sequence[RunRecord], ends: Sequence[RunEnd]) -> None:
        """Store another backend's runs; see the protocol."""
        for start in starts:
            self.store.runs.setdefault(start.run_id, dataclasses.replace(start))
        for end in ends:
            self._end_run(end)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """One run."""
        run = self.store.runs.get(run_id)
        return dataclasses.replace(run) if run else None

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        """Store log lines."""
        if lines:
            self.store.unsorted_logs.append(
                [(ln.run_id, ln.seq, ln.ts, ln.level, ln.message, ln.extra) for ln in lines]
            )

    async def finish_with_logs(
        self, transitions: Sequence[Transition], rows: Sequence[LogRow]
    ) -> list[bool]:
        """Store log lines (rows in LogLine's field order) and apply transitions in one step.

        The worker's writer uses it (see :class:`conveyor.backends.base.FinishesWithLogs`).
        """
        if rows:
            self.store.unsorted_logs.append(list(rows))
        return await self.finish(transitions)

    def _sorted_logs(self) -> dict[str, list[LogLine]]:
        """The lines by run, with every batch appended so far sorted in."""
        store = self.store
        logs = store.logs
        for batch in store.unsorted_logs:
            for row in batch:
                line = LogLine(*row)
                stored = logs.get(line.run_id)
                if stored is None:
                    logs[line.run_id] = [line]
                else:
                    stored.append(line)
        store.unsorted_logs.clear()
        return logs

    async def read_logs(self, run_id: str, after_seq: int, limit: int) -> list[LogLine]:
        """A run's lines after a cursor."""
        lines = sorted(self._sorted_logs().get(run_id, []), key=lambda line: line.seq)
        return [line for line in lines if line.seq > after_seq][:limit]

    async def purge_runs(self, before_ms: int, limit: int) -> int:
        """Delete old finished runs and their logs."""
        doomed = [
            r.run_id
            for r in self.store.runs.values()
            if r.status != "running" and r.started_ms < before_ms
        ][:limit]
        logs = self._sorted_logs()
        for run_id in doomed:
            del self.store.runs[run_id]
            logs.pop(run_id, None)
        return len(doomed)


def _matches(run: RunRecord, f: RunFilter) -> bool:
    return not (
        (f.status is not None and run.status != f.status)
        or (f.function is not None and run.function != f.function)
        or (f.key is not None and run.key != f.key)
        or (f.since_ms is not None and run.started_ms < f.since_ms)
        or (f.until_ms is not None and run.started_ms >= f.until_ms)
        or (
            f.error_contains is not None
            and f.error_contains.lower() not in (run.error or "").lower()
        )
    )
