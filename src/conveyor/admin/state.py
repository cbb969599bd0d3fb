"""What is in the queues and who works on them: jobs by status, cron jobs with their latest
runs, and whether each queue has a live worker.

Like every admin query, these read only through the
:class:`~conveyor.backends.base.Backend` protocol and are bounded by the module constants
below. ``scheduled`` is not a stored status: it is a ``queued`` job that is not yet due,
told apart here, in the core, from the job's ``scheduled`` time.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from conveyor.admin import helpers
from conveyor.admin.models import RunSummary, json_friendly
from conveyor.admin.queries import AdminQueries
from conveyor.admin.state_models import (
    CronEntry,
    Health,
    JobInfo,
    JobPage,
    QueueHealth,
    WorkerHealth,
)
from conveyor.backends.base import JobRow, RunFilter, RunRecord
from conveyor.cron import CronJob
from conveyor.errors import AdminError
from conveyor.queue import Queue

logger = logging.getLogger("conveyor.admin")

#: The statuses :meth:`AdminState.jobs` lists: ``queued`` (due), ``scheduled`` (queued,
#: not yet due), then the stored statuses.
JOB_STATUSES = ("queued", "scheduled", "active", "aborting", "complete", "failed", "aborted")
#: The largest page of jobs.
MAX_JOBS_PAGE = 500
#: Job rows read per backend call.
JOBS_BATCH = 500
#: Job rows one :meth:`AdminState.jobs` call reads at most per queue (a page of only
#: ``queued`` or only ``scheduled`` jobs, or of several queues, is read from the start).
JOBS_SCAN = 10_000
#: Rows further than this from the newest are never read: offsets cost the SQL backends
#: time in proportion.
JOBS_DEPTH = 100_000
#: Runs of a task that :meth:`AdminState.cron` looks through for each cron job's latest.
CRON_HISTORY_SCAN = 1_000
#: Fire times :meth:`AdminState.cron` lists at most per cron job.
MAX_UPCOMING = 100


class AdminState(AdminQueries):
    """Job lists, the cron table and worker health of :class:`conveyor.admin.Admin`."""

    # Jobs

    async def jobs(
        self,
        statuses: Sequence[str] | None = None,
        offset: int = 0,
        limit: int = 50,
        queue: str | None = None,
        *,
        oldest_first: bool = False,
    ) -> JobPage:
        """A page of the jobs with some statuses, newest first, and the total of each status.

        Args:
            statuses: Any of :data:`JOB_STATUSES`: ``queued`` is a job waiting and due,
                ``scheduled`` one waiting for a later time. All of them when None.
            offset: Jobs to skip.
            limit: Page size, 1 to :data:`MAX_JOBS_PAGE`.
            queue: Only this queue; all queues by default (merged by enqueue time).
            oldest_first: Oldest first instead.

        Returns:
            The page; ``truncated`` when a bound (:data:`JOBS_SCAN`, :data:`JOBS_DEPTH`)
            stopped the read before the page was full.

        Raises:
            AdminError: For an unknown status or a bad page.
            UnknownQueueError: For a queue this service does not serve.
        """
        wanted = _job_statuses(statuses)
        if offset < 0 or not 1 <= limit <= MAX_JOBS_PAGE:
            raise AdminError(f"offset must be 0 or more and limit 1 to {MAX_JOBS_PAGE}")
        await self.connect()
        selected = self._select(queue)
        # Due and not-yet-due jobs share the stored status ``queued``: asking for one and
        # not the other filters rows here, so the page cannot start at ``offset`` in the
        # backend; neither can a page merged from several queues.
        direct = len(selected) == 1 and not _filtered(wanted)
        skip = offset if direct else 0
        totals = dict.fromkeys(JOB_STATUSES, 0)
        pages: list[list[JobInfo]] = []
        truncated = False
        for q in selected:
            counts = await self._job_counts(q)
            for status, count in counts.items():
                totals[status] += count
            rows, cut = await self._job_rows(
                q, wanted, counts, skip, offset + limit - skip, oldest_first
            )
            pages.append(rows)
            truncated = truncated or cut
        merged = list(heapq.merge(*pages, key=_enqueued, reverse=not oldest_first))
        return JobPage(
            statuses=list(wanted),
            jobs=merged[offset - skip : offset - skip + limit],
            total=sum(totals[status] for status in wanted),
            offset=offset,
            limit=limit,
            totals=totals,
            oldest_first=oldest_first,
            truncated=truncated,
        )

    @staticmethod
    async def _job_counts(queue: Queue) -> dict[str, int]:
        counts = await queue.backend.count(list(JOB_STATUSES))
        counts["queued"] = max(counts["queued"] - counts["scheduled"], 0)
        return counts

    async def _job_rows(
        self,
        queue: Queue,
        wanted: tuple[str, ...],
        counts: dict[str, int],
        skip: int,
        want: int,
        oldest_first: bool,
    ) -> tuple[list[JobInfo], bool]:
        """Up to ``want`` jobs of ``queue`` with a wanted status, from position ``skip``
        in the order asked for, and whether a bound stopped the read early."""
        stored = sorted({"queued" if s == "scheduled" else s for s in wanted})
        available = sum(counts[s] for s in stored) + (
            counts["scheduled"] if "queued" in stored else 0
        )
        batch = JOBS_BATCH if _filtered(wanted) else min(want, JOBS_BATCH)
        now = time.time()
        found: list[JobInfo] = []
        seen: set[str] = set()
        position, read = skip, 0
        while len(found) < want:
            if read >= JOBS_SCAN:
                return found, position < available
            size = min(batch, JOBS_SCAN - read)
            rows, last, cut = await _read_rows(
                queue, stored, position, size, available, oldest_first
            )
            for row in rows:
                job = queue.deserialize(row)
                if job is None or job.key in seen:
                    continue
                seen.add(job.key)
                info = JobInfo.from_job(job, queue.name, now)
                if info.list_status in wanted and len(found) < want:
                    found.append(info)
            position, read = position + size, read + len(rows)
            if last or cut:
                return found, cut
        return found, False

    # Cron

    async def cron(
        self,
        now: float | datetime | None = None,
        *,
        upcoming: int = 5,
        queue: str | None = None,
    ) -> list[CronEntry]:
        """Every cron job, by task name: expression, zone, next fire times, latest run.

        The latest run is the newest run of a job the schedule itself enqueued (its
        trigger is ``cron`` with the same expression), so running the task by hand does
        not hide when the schedule last fired. It is looked for among the newest
        :data:`CRON_HISTORY_SCAN` runs of the task.

        Args:
            now: The time the fire times follow (epoch s or aware datetime); now by default.
            upcoming: How many fire times to list, 1 to :data:`MAX_UPCOMING`.
            queue: Only the cron jobs of this queue.

        Raises:
            AdminError: For a naive datetime or a bad ``upcoming``.
            UnknownQueueError: For a queue this service does not serve.
        """
        instant = helpers.epoch(now, "now") if now is not None else time.time()
        if not 1 <= upcoming <= MAX_UPCOMING:
            raise AdminError(f"upcoming must be 1 to {MAX_UPCOMING}, got {upcoming}")
        await self.connect()
        entries = []
        for q in self._select(queue):
            crons = self.cron_jobs_by_queue.get(q.name, [])
            latest = await self._latest_cron_runs(q, crons) if crons else {}
            for cron in crons:
                last = latest.get((cron.name, cron.cron))
                entries.append(self._cron_entry(cron, q.name, instant, upcoming, last))
        return sorted(entries, key=lambda entry: entry.name)

    def _cron_entry(
        self, cron: CronJob, queue: str, now: float, upcoming: int, last: RunSummary | None
    ) -> CronEntry:
        schedule = cron.schedule(self.cron_tz)
        times = schedule.upcoming(now, upcoming)
        fn = self.functions.get(cron.name)
        return CronEntry(
            name=cron.name,
            queue=queue,
            doc=inspect.getdoc(fn) if fn is not None else None,
            cron=cron.cron,
            tz=str(schedule.tz),
            next_run=times[0],
            next_runs=times,
            timeout=cron.job_kwargs().get("timeout"),
            kwargs=json_friendly(dict(cron.kwargs or {})),
            unique=cron.unique,
            last_run=last,
        )

    async def _latest_cron_runs(
        self, queue: Queue, crons: Sequence[CronJob]
    ) -> dict[tuple[str, str], RunSummary]:
        """The newest run of each (task, expression) among the crons, by that pair."""
        found: dict[tuple[str, str], RunSummary] = {}
        page = 100
        for name in dict.fromkeys(cron.name for cron in crons):
            missing = {cron.cron for cron in crons if cron.name == name}
            offset = 0
            while missing and offset < CRON_HISTORY_SCAN:
                records, _ = await queue.backend.list_runs(RunFilter(function=name), offset, page)
                for record, expression in zip(
                    records, await self._cron_expressions(queue, records), strict=True
                ):
                    if expression in missing:
                        missing.discard(expression)
                        found[(name, expression)] = RunSummary.from_record(record, queue.name)
                if len(records) < page:
                    break
                offset += len(records)
        return found

    async def _cron_expressions(
        self, queue: Queue, records: Sequence[RunRecord]
    ) -> list[str | None]:
        """For each run, the expression of the cron job that enqueued it, or None."""
        # A finished run keeps its trigger in its detail; a running one has no detail yet,
        # so its job's meta (which the detail is later written from) tells.
        running = [record.key for record in records if not record.detail]
        jobs = dict(zip(running, await queue.jobs(running), strict=True)) if running else {}
        out: list[str | None] = []
        for record in records:
            origin: dict[str, Any] = {}
            if record.detail:
                origin = _loaded(queue, record)
            else:
                job = jobs.get(record.key)
                if job is not None and str(job.meta.get("run_id")) == record.run_id:
                    origin = job.meta
            cron = origin.get("cron") if origin.get("trigger") == "cron" else None
            out.append(str(cron) if cron else None)
        return out

    # Health

    async def health(self, *, max_age_s: float | None = None, queue: str | None = None) -> Health:
        """Whether every queue has a live worker, and how recently each worker reported.

        A worker is alive while its record has not expired (it does after about three
        ``stats`` periods without a report) and, when ``max_age_s`` is given, while its
        last report is no older than that: a stricter check for a hung worker.

        Args:
            max_age_s: The oldest report that still counts as alive, in seconds.
            queue: Only this queue.

        Raises:
            AdminError: For a ``max_age_s`` that is not positive.
            UnknownQueueError: For a queue this service does not serve.
        """
        if max_age_s is not None and not max_age_s > 0:
            raise AdminError(f"max_age_s must be more than 0, got {max_age_s}")
        await self.connect()
        now = time.time()
        queues = []
        for q in self._select(queue):
            workers = []
            for info, _ in await self._worker_records(q):
                age = max(now - info.updated, 0.0) if info.updated is not None else None
                alive = max_age_s is None or (age is not None and age <= max_age_s)
                workers.append(
                    WorkerHealth(
                        id=info.id, updated=info.updated, age_s=age, alive=alive, hung=info.hung
                    )
                )
            live = [w.age_s for w in workers if w.alive]
            ages = [age for age in live if age is not None]
            queues.append(
                QueueHealth(
                    name=q.name,
                    alive=len(live),
                    last_report_age_s=min(ages) if ages else None,
                    healthy=bool(live),
                    workers=workers,
                    hung=sum(w.hung for w in workers if w.alive),
                )
            )
        return Health(
            healthy=all(h.healthy for h in queues),
            checked_at=now,
            workers=sum(h.alive for h in queues),
            queues=queues,
        )

    async def ready(self, timeout_s: float = 2.0) -> bool:
        """Whether every queue's backend answers a read (a key lookup) within ``timeout_s``.

        For a readiness probe: it says nothing about workers (see :meth:`health`), and an
        error or a late answer is simply "not ready".
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self.connect()
                for q in self._select(None):
                    await q.job("conveyor-readiness-probe")
        except Exception:
            return False
        return True


def _job_statuses(statuses: Sequence[str] | None) -> tuple[str, ...]:
    if statuses is None:
        return JOB_STATUSES
    if isinstance(statuses, str):
        statuses = [statuses]
    unknown = [s for s in statuses if s not in JOB_STATUSES]
    if unknown or not statuses:
        raise AdminError(
            f"unknown job status(es) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"use {', '.join(JOB_STATUSES)}"
        )
    return tuple(dict.fromkeys(statuses))


def _filtered(wanted: tuple[str, ...]) -> bool:
    """Whether rows must be filtered here: due or not-yet-due queued jobs, not both."""
    return ("queued" in wanted) != ("scheduled" in wanted)


async def _read_rows(
    queue: Queue,
    statuses: list[str],
    position: int,
    size: int,
    available: int,
    oldest_first: bool,
) -> tuple[list[JobRow], bool, bool]:
    """Up to ``size`` rows from ``position`` in the order asked for.

    The backend lists newest first, so the oldest are read from ``available`` back.

    Returns:
        The rows, whether they are the last, and whether :data:`JOBS_DEPTH` cut the read.
    """
    if oldest_first:
        end = available - position
        if end <= 0:
            return [], True, False
        if end > JOBS_DEPTH:
            return [], True, True
        begin = max(end - size, 0)
        rows = await queue.backend.list_jobs(statuses, begin, end - begin)
        return rows[::-1], begin == 0, False
    if position >= JOBS_DEPTH:
        return [], True, position < available
    size = min(size, JOBS_DEPTH - position)
    rows = await queue.backend.list_jobs(statuses, position, size)
    return rows, len(rows) < size, False


def _loaded(queue: Queue, record: RunRecord) -> dict[str, Any]:
    try:
        detail = queue.load(record.detail)
    except Exception:
        logger.warning("unreadable detail of run %s on queue %r", record.run_id, queue.name)
        return {}
    return detail if isinstance(detail, dict) else {}


def _enqueued(job: JobInfo) -> float:
    return job.queued or 0.0


__all__ = [
    "CRON_HISTORY_SCAN",
    "JOBS_BATCH",
    "JOBS_DEPTH",
    "JOBS_SCAN",
    "JOB_STATUSES",
    "MAX_JOBS_PAGE",
    "MAX_UPCOMING",
    "AdminState",
]
