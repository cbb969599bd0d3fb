"""Read-only admin queries: the state now, run history, logs and throughput.

Every query reads only through the :class:`~conveyor.backends.base.Backend` protocol, so
every backend answers the same questions the same way, and every query is bounded: the
bounds are the module constants below.
"""

from __future__ import annotations

import heapq
import logging
import time
from datetime import datetime
from typing import Any

from conveyor.admin import helpers
from conveyor.admin.base import AdminBase
from conveyor.admin.models import (
    LogEntry,
    LogPage,
    Overview,
    QueueState,
    RunDetail,
    RunningJob,
    RunPage,
    RunSummary,
    Throughput,
    WorkerInfo,
)
from conveyor.backends.base import LogLine, RunFilter, RunRecord
from conveyor.errors import AdminError
from conveyor.job import now_ms
from conveyor.queue import Queue

logger = logging.getLogger("conveyor.admin")

#: The largest page of runs or log lines.
MAX_PAGE = 1000
#: Runs of one job key listed in a run's detail.
MAX_ATTEMPTS = 100
#: Log lines a single :meth:`Admin.logs` call reads while looking for matches.
LOG_SCAN = 20_000
#: Runs :meth:`Admin.throughput` reads at most (the newest of the window).
MAX_THROUGHPUT_RUNS = 10_000
#: Buckets :meth:`Admin.throughput` returns at most.
MAX_BUCKETS = 2_000
#: Queued jobs the latency gauge looks through: the oldest due job among the earliest
#: ``LATENCY_TAIL`` of the oldest ``LATENCY_SCAN`` jobs; beyond, the latency is a lower bound.
LATENCY_SCAN = 10_000
LATENCY_TAIL = 200


class AdminQueries(AdminBase):
    """The read-only half of :class:`conveyor.admin.Admin`."""

    # Current state

    async def queue_states(self, queue: str | None = None) -> list[QueueState]:
        """Counts, latency and live workers of each queue (what the metrics gauges show)."""
        await self.connect()
        return [await self._queue_state(q) for q in self._select(queue)]

    async def _queue_state(self, queue: Queue) -> QueueState:
        counts = await queue.backend.count(["queued", "active", "aborting", "scheduled"])
        latency, exact = await self._latency(queue, counts["queued"])
        return QueueState(
            name=queue.name,
            queued=counts["queued"] - counts["scheduled"],
            active=counts["active"] + counts["aborting"],
            scheduled=counts["scheduled"],
            latency_s=latency,
            latency_exact=exact,
            workers=await self._workers(queue),
        )

    async def _latency(self, queue: Queue, queued: int) -> tuple[float, bool]:
        if queued <= 0:
            return 0.0, True
        window = min(queued, LATENCY_SCAN)
        rows = await queue.backend.list_jobs(
            ["queued"], max(window - LATENCY_TAIL, 0), LATENCY_TAIL
        )
        now = time.time()
        oldest = 0.0
        for row in rows:
            job = queue.deserialize(row)
            if job is None:
                continue
            ready = max(job.queued / 1000, float(job.scheduled or 0))
            if ready <= now:
                oldest = max(oldest, now - ready)
        return oldest, queued <= LATENCY_TAIL

    async def _worker_records(self, queue: Queue) -> list[tuple[WorkerInfo, list[str]]]:
        """The live workers' records (``running`` left empty) and the keys each runs."""
        out = []
        for worker_id, payload in sorted((await queue.backend.workers()).items()):
            try:
                record = queue.load(payload)
            except Exception:
                logger.warning("unreadable record of worker %s on queue %r", worker_id, queue.name)
                continue
            out.append(
                (helpers.worker_info(worker_id, record, queue.name), helpers.running_keys(record))
            )
        return out

    async def _workers(self, queue: Queue) -> list[WorkerInfo]:
        records = await self._worker_records(queue)
        workers = [worker for worker, _ in records]
        keys = {worker.id: running for worker, running in records}
        wanted = [key for ks in keys.values() for key in ks]
        jobs = dict(zip(wanted, await queue.jobs(wanted), strict=True)) if wanted else {}
        for worker in workers:
            for key in keys[worker.id]:
                job = jobs.get(key)
                worker.running.append(
                    RunningJob(
                        key=key,
                        function=job.function if job else "",
                        started=job.started / 1000 if job and job.started else None,
                    )
                )
        return workers

    async def overview(self, queue: str | None = None, window_s: float = 86400) -> Overview:
        """Completed and failed runs of the last ``window_s`` seconds, and the state now.

        Args:
            queue: One queue's name; all queues by default.
            window_s: The period the run counts cover (24 h).
        """
        states = await self.queue_states(queue)
        since_ms = now_ms() - int(window_s * 1000)
        totals = {"complete": 0, "failed": 0}
        for q in self._select(queue):
            for status in totals:
                _, total = await q.backend.list_runs(
                    RunFilter(status=status, since_ms=since_ms), 0, 1
                )
                totals[status] += total
        return Overview(
            window_s=window_s,
            completed=totals["complete"],
            failed=totals["failed"],
            queued=sum(s.queued for s in states),
            running=sum(s.active for s in states),
            scheduled=sum(s.scheduled for s in states),
            workers=[w for s in states for w in s.workers],
            queues=states,
        )

    # Run history

    async def runs(
        self,
        *,
        status: str | None = None,
        function: str | None = None,
        queue: str | None = None,
        key: str | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        q: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> RunPage:
        """A page of runs, newest first, and how many match.

        Args:
            status: Only runs with this status (see :data:`helpers.RUN_STATUSES`).
            function: Only runs of this task.
            queue: Only runs of this queue.
            key: Only runs of this job.
            since: Only runs started at or after this time (epoch s or aware datetime).
            until: Only runs started before this time.
            q: Only runs whose error contains this text (case-insensitive).
            offset: Runs to skip.
            limit: Page size, 1 to :data:`MAX_PAGE`.

        Raises:
            AdminError: For an unknown status, a bad page or a naive datetime.
            UnknownQueueError: For a queue this service does not serve.
        """
        helpers.check_run_status(status)
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise AdminError(f"offset must be 0 or more and limit 1 to {MAX_PAGE}")
        filters = RunFilter(
            status=status,
            function=function or None,
            key=key or None,
            since_ms=helpers.epoch_ms(since, "since"),
            until_ms=helpers.epoch_ms(until, "until"),
            error_contains=q or None,
        )
        await self.connect()
        selected = self._select(queue)
        if len(selected) == 1:
            records, total = await selected[0].backend.list_runs(filters, offset, limit)
            summaries = [RunSummary.from_record(r, selected[0].name) for r in records]
            return RunPage(runs=summaries, total=total, offset=offset, limit=limit)
        # Several queues: each gives its newest offset + limit, merged newest first.
        pages, total = [], 0
        for q_ in selected:
            records, count = await q_.backend.list_runs(filters, 0, offset + limit)
            total += count
            pages.append([RunSummary.from_record(r, q_.name) for r in records])
        merged = heapq.merge(*pages, key=lambda s: s.started or 0.0, reverse=True)
        summaries = list(merged)[offset : offset + limit]
        return RunPage(runs=summaries, total=total, offset=offset, limit=limit)

    async def run(self, run_id: str, queue: str | None = None) -> RunDetail:
        """Everything about one run: arguments, result, traceback, trigger, attempts.

        Run ids are unique within a queue; with several queues, the first queue that has
        the id answers unless ``queue`` names one.

        Raises:
            RunNotFoundError: When no queue has the run.
        """
        q, record = await self._find_run(run_id, queue)
        detail: dict[str, Any] = {}
        if record.detail:
            try:
                loaded = q.load(record.detail)
                detail = loaded if isinstance(loaded, dict) else {}
            except Exception:
                logger.warning("unreadable detail of run %s on queue %r", run_id, q.name)
        job = await q.job(record.key)
        meta = job.meta if job is not None and job.meta else {}
        if not detail and job is not None:
            # Still running: what the job says now is what the run will record.
            detail = {"kwargs": job.kwargs or {}, "trigger": meta.get("trigger", "enqueued")}
            detail.update({k: meta.get(k) for k in ("cron", "scheduled_for")})
        attempts, _ = await q.backend.list_runs(RunFilter(key=record.key), 0, MAX_ATTEMPTS)
        scheduled_for = detail.get("scheduled_for")
        return RunDetail(
            run=RunSummary.from_record(record, q.name),
            kwargs=dict(detail.get("kwargs") or {}),
            result=detail.get("result"),
            traceback=detail.get("traceback"),
            trigger=detail.get("trigger"),
            actor=meta.get("actor") if job is not None else None,
            cron=detail.get("cron"),
            scheduled_for=float(scheduled_for) if scheduled_for is not None else None,
            job_status=job.status.value if job is not None else None,
            progress=job.progress if job is not None else None,
            attempts=[RunSummary.from_record(r, q.name) for r in reversed(attempts)],
        )

    async def logs(
        self,
        run_id: str,
        cursor: int = 0,
        limit: int = 500,
        level: int | str | None = None,
        q: str | None = None,
        queue: str | None = None,
    ) -> LogPage:
        """A page of a run's log lines after ``cursor``, filtered by level and text.

        Lines are read in ``seq`` order from the cursor and filtered afterwards; the
        returned ``next_cursor`` is past every line read, matched or not, so paging
        through a filter that matches little still moves forward. One call reads at most
        :data:`LOG_SCAN` lines.

        Args:
            run_id: The run.
            cursor: Return lines with ``seq`` above this (0: from the start).
            limit: The most lines returned, 1 to :data:`MAX_PAGE`.
            level: The minimum level (name or number).
            q: Only lines whose message contains this text (case-insensitive).
            queue: The run's queue, when several are served.

        Raises:
            RunNotFoundError: When the run does not exist.
            AdminError: For an unknown level or a bad limit.
        """
        minimum = helpers.level_number(level)
        if not 1 <= limit <= MAX_PAGE:
            raise AdminError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
        target, record = await self._find_run(run_id, queue)
        needle = q.lower() if q else None
        lines: list[LogEntry] = []
        scanned, next_cursor, more = 0, max(int(cursor), 0), False
        # One line more than asked tells whether more follow.
        batch_size = MAX_PAGE if (needle or minimum) else limit + 1
        while True:
            batch = await target.backend.read_logs(record.run_id, next_cursor, batch_size)
            for index, line in enumerate(batch):
                next_cursor, scanned = line.seq, scanned + 1
                if helpers.line_level(line.level) >= minimum and (
                    needle is None or needle in line.message.lower()
                ):
                    lines.append(self._log_entry(target, line))
                if len(lines) >= limit:
                    more = index < len(batch) - 1 or len(batch) == batch_size
                    break
            else:
                more = len(batch) == batch_size
                if more and scanned < LOG_SCAN:
                    continue
            break
        return LogPage(
            run_id=record.run_id,
            lines=lines,
            next_cursor=next_cursor,
            more=more,
            run_status=record.status,
        )

    @staticmethod
    def _log_entry(queue: Queue, line: LogLine) -> LogEntry:
        extra: dict[str, Any] = {}
        if line.extra:
            try:
                loaded = queue.load(line.extra)
                extra = loaded if isinstance(loaded, dict) else {}
            except Exception:
                extra = {}
        return LogEntry(
            seq=line.seq, ts=line.ts, level=line.level, message=line.message, extra=extra
        )

    async def throughput(
        self,
        since: float | datetime,
        bucket_s: float,
        function: str | None = None,
        *,
        until: float | datetime | None = None,
        queue: str | None = None,
    ) -> Throughput:
        """Runs per time bucket by status, and per-task counts with mean and p95 durations.

        Computed from the runs that started in the window, reading at most
        :data:`MAX_THROUGHPUT_RUNS` of them, newest first: when the window holds more,
        its oldest runs are left out and ``truncated`` is set.

        Args:
            since: The window's start (epoch s or aware datetime).
            bucket_s: Bucket width in seconds.
            function: Only this task.
            until: The window's end; now by default.
            queue: Only this queue.

        Raises:
            AdminError: For an empty window, a bad bucket width or more than
                :data:`MAX_BUCKETS` buckets.
        """
        start = helpers.epoch(since, "since")
        end = helpers.epoch(until, "until") if until is not None else time.time()
        if not bucket_s > 0 or end <= start:
            raise AdminError("throughput needs bucket_s > 0 and since before until")
        if (end - start) / bucket_s > MAX_BUCKETS:
            raise AdminError(f"at most {MAX_BUCKETS} buckets; use a wider bucket_s")
        await self.connect()
        # A run that started within the current millisecond counts as started before now.
        until_ms = int(end * 1000) + (1 if until is None else 0)
        filters = RunFilter(
            function=function or None, since_ms=int(start * 1000), until_ms=until_ms
        )
        records: list[RunRecord] = []
        total = 0
        for q in self._select(queue):
            # One call per queue: each call counts the matching runs, and a million of them
            # took as long to count as to read (ten pages of 1,000 counted them ten times).
            # With the budget spent, a one-run page still counts this queue's runs.
            room = MAX_THROUGHPUT_RUNS - len(records)
            page, count = await q.backend.list_runs(filters, 0, max(room, 1))
            total += count
            records.extend(page[:room])
        buckets, functions = helpers.bucketize(records, start, end, bucket_s)
        return Throughput(
            since=start,
            until=end,
            bucket_s=bucket_s,
            buckets=buckets,
            functions=functions,
            sampled=len(records),
            total=total,
            truncated=total > len(records),
        )


__all__ = [
    "LATENCY_SCAN",
    "LATENCY_TAIL",
    "LOG_SCAN",
    "MAX_ATTEMPTS",
    "MAX_BUCKETS",
    "MAX_PAGE",
    "MAX_THROUGHPUT_RUNS",
    "AdminQueries",
]
