"""A backend that keeps jobs in one store and run records (with their logs) in another.

For example jobs on Redis, for fast claims, and runs in PostgreSQL, for long, searchable
history: ``Queue.from_url("redis://...", runs_url="postgresql://...?schema=runs")``.

The job store still creates its own run row at each claim (that is part of its atomic
claim); the split copies each new run to the run store with :meth:`Backend.record_runs`,
under an id prefixed by ``namespace`` so that several job stores can share one run store.
Everything about runs is then read from the run store. The copy is a second round trip,
not part of the claim's atomic step: if it fails, the claim's caller sees the error and the
claimed jobs are recovered when their lease expires, like those of a worker that died.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from conveyor.backends.base import (
    Backend,
    Capabilities,
    JobRow,
    Lease,
    LogLine,
    NewJob,
    Payload,
    Renewal,
    RunEnd,
    RunFilter,
    RunRecord,
    Transition,
)


class SplitBackend:
    """Jobs in ``jobs``, runs and logs in ``runs``.

    Args:
        jobs: The backend every job operation goes to.
        runs: The backend run records and log lines are stored in and read from.
        function_of: The task name of a claimed row (the queue reads it from the payload).
        namespace: Prefix of the run ids (``namespace:run_id``); unique per job store and
            queue, so that job stores sharing a run store never give two runs one id.
    """

    name = "split"

    def __init__(
        self,
        jobs: Backend,
        runs: Backend,
        function_of: Callable[[JobRow], str],
        namespace: str,
    ) -> None:
        self.jobs = jobs
        self.runs = runs
        self.function_of = function_of
        self.prefix = f"{namespace}:"
        self.capabilities = Capabilities(
            cross_process=jobs.capabilities.cross_process and runs.capabilities.cross_process,
            durable=jobs.capabilities.durable and runs.capabilities.durable,
            transactional_enqueue=jobs.capabilities.transactional_enqueue,
            run_store=False,
            lazy_enqueue=jobs.capabilities.lazy_enqueue,
        )

    def _public(self, row: JobRow) -> JobRow:
        if row.run_id is None:
            return row
        return dataclasses.replace(row, run_id=self.prefix + row.run_id)

    def _local_end(self, end: RunEnd) -> RunEnd:
        return dataclasses.replace(end, run_id=end.run_id.removeprefix(self.prefix))

    async def connect(self) -> None:
        """Connect both stores."""
        await self.jobs.connect()
        await self.runs.connect()

    async def disconnect(self) -> None:
        """Disconnect both stores."""
        try:
            await self.jobs.disconnect()
        finally:
            await self.runs.disconnect()

    async def drop(self) -> None:
        """Drop what both stores created for this queue."""
        await self.jobs.drop()
        await self.runs.drop()

    def describe(self) -> dict[str, Any]:
        """The job store's facts, with the run store's under ``runs``."""
        return {**self.jobs.describe(), "runs": self.runs.describe()}

    async def enqueue(self, jobs: Iterable[NewJob], **kwargs: Any) -> list[bool]:
        """Insert jobs in the job store (``connection`` passes through)."""
        enqueue: Any = self.jobs.enqueue  # any iterable when the job store is lazy_enqueue
        inserted: list[bool] = await enqueue(jobs, **kwargs)
        return inserted

    async def claim(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Claim in the job store, then record the new runs in the run store."""
        rows = [
            self._public(row)
            for row in await self.jobs.claim(worker_id, limit, lease_s, now, vouch=vouch)
        ]
        starts = [
            RunRecord(
                run_id=row.run_id,
                key=row.key,
                function=self.function_of(row),
                attempt=row.attempts,
                worker_id=worker_id,
                status="running",
                started_ms=row.started_ms,
            )
            for row in rows
            if row.run_id is not None
        ]
        if starts:
            await self.runs.record_runs(starts, [])
        return rows

    async def wait_for_work(self, timeout: float) -> None:
        """Wait on the job store."""
        await self.jobs.wait_for_work(timeout)

    async def renew(
        self,
        worker_id: str,
        leases: Sequence[Lease],
        lease_s: float,
        now: float,
        *,
        vouch: bool = True,
    ) -> Renewal:
        """Renew leases in the job store."""
        return await self.jobs.renew(worker_id, leases, lease_s, now, vouch=vouch)

    async def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        """Apply transitions in the job store, then end the runs of those it applied in the
        run store (a refused stale write ends no run)."""
        local = [
            t if t.run is None else dataclasses.replace(t, run=self._local_end(t.run))
            for t in transitions
        ]
        applied = await self.jobs.finish(local)
        ends = [
            t.run
            for t, done in zip(transitions, applied, strict=True)
            if t.run is not None and (done or t.token is None)
        ]
        if ends:
            await self.runs.record_runs([], ends)
        return applied

    async def update(self, key: str, payload: Payload, token: str | None = None) -> bool:
        """Store a payload in the job store."""
        return await self.jobs.update(key, payload, token)

    async def abort(self, key: str, payload: Payload, now: float) -> str | None:
        """Abort in the job store."""
        return await self.jobs.abort(key, payload, now)

    async def recover(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Take over expired leases in the job store; run ids as the run store knows them."""
        return [
            self._public(row)
            for row in await self.jobs.recover(worker_id, limit, lease_s, now, vouch=vouch)
        ]

    async def get(self, keys: Sequence[str]) -> list[JobRow | None]:
        """Load jobs from the job store."""
        return [None if row is None else self._public(row) for row in await self.jobs.get(keys)]

    async def list_jobs(
        self, statuses: Sequence[str] | None, offset: int, limit: int
    ) -> list[JobRow]:
        """List jobs of the job store."""
        return [self._public(row) for row in await self.jobs.list_jobs(statuses, offset, limit)]

    async def count(self, statuses: Sequence[str]) -> dict[str, int]:
        """Count jobs of the job store."""
        return await self.jobs.count(statuses)

    async def wait_for_finish(self, keys: Sequence[str], timeout: float) -> None:
        """Wait on the job store."""
        await self.jobs.wait_for_finish(keys, timeout)

    async def expire(self, now: float, limit: int) -> int:
        """Expire jobs of the job store."""
        return await self.jobs.expire(now, limit)

    async def put_worker(self, worker_id: str, info: Payload, ttl_s: float) -> None:
        """Store a worker record in the job store."""
        await self.jobs.put_worker(worker_id, info, ttl_s)

    async def delete_worker(self, worker_id: str) -> None:
        """Remove a worker record from the job store."""
        await self.jobs.delete_worker(worker_id)

    async def workers(self) -> dict[str, Payload]:
        """Live workers of the job store."""
        return await self.jobs.workers()

    async def record_runs(self, starts: Sequence[RunRecord], ends: Sequence[RunEnd]) -> None:
        """Store runs in the run store."""
        await self.runs.record_runs(starts, ends)

    async def list_runs(
        self, filters: RunFilter, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """List runs of the run store."""
        return await self.runs.list_runs(filters, offset, limit)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """One run of the run store."""
        return await self.runs.get_run(run_id)

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        """Store log lines in the run store."""
        await self.runs.append_logs(lines)

    async def read_logs(self, run_id: str, after_seq: int, limit: int) -> list[LogLine]:
        """A run's lines from the run store."""
        return await self.runs.read_logs(run_id, after_seq, limit)

    async def purge_runs(self, before_ms: int, limit: int) -> int:
        """Purge runs of the run store, and the job store's own copies alongside.

        Returns:
            How many runs went from the run store.
        """
        deleted, _ = await asyncio.gather(
            self.runs.purge_runs(before_ms, limit), self.jobs.purge_runs(before_ms, limit)
        )
        return deleted
