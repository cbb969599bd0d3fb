"""What :mod:`conveyor.admin.state` returns: jobs by status, cron jobs, worker health.

Like :mod:`conveyor.admin.models`: typed records with a JSON-friendly ``to_dict()``, times
in epoch seconds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from conveyor.admin.models import Record, RunSummary, json_friendly
from conveyor.job import Job, Status


@dataclasses.dataclass
class JobInfo(Record):
    """A job as the job lists show it.

    Attributes:
        key: The job's key.
        queue: Its queue.
        function: The task name.
        status: Its status (``queued`` for scheduled jobs too; see ``due_later``).
        kwargs: Its arguments.
        queued: When it was enqueued.
        scheduled: When it is due, if it was given a time.
        started: When its current attempt started.
        attempts: Attempts started so far.
        retries: The attempts it may have.
        error: The error of its last attempt.
        progress: Its progress, 0 to 1.
        worker_id: The worker running it.
        run_id: The run of its current or last attempt.
        actor: Who enqueued or retried it from a front end, when known.
        due_later: It is queued and not yet due (``scheduled`` in :meth:`Admin.jobs`).
    """

    key: str
    queue: str
    function: str
    status: str
    kwargs: dict[str, Any]
    queued: float | None
    scheduled: float | None
    started: float | None
    attempts: int
    retries: int
    error: str | None
    progress: float
    worker_id: str | None
    run_id: str | None
    actor: str | None
    due_later: bool

    @classmethod
    def from_job(cls, job: Job, queue: str, now: float) -> JobInfo:
        """Build from a core job, as it stands at ``now`` (epoch seconds)."""
        meta = job.meta or {}
        scheduled = float(job.scheduled) if job.scheduled else None
        return cls(
            key=job.key,
            queue=queue,
            function=job.function,
            status=job.status.value,
            kwargs=json_friendly(dict(job.kwargs or {})),
            queued=job.queued / 1000 if job.queued else None,
            scheduled=scheduled,
            started=job.started / 1000 if job.started else None,
            attempts=job.attempts,
            retries=int(job.retries),
            error=job.error_summary,
            progress=float(job.progress or 0.0),
            worker_id=job.worker_id,
            run_id=str(meta["run_id"]) if meta.get("run_id") is not None else None,
            actor=str(meta["actor"]) if meta.get("actor") is not None else None,
            due_later=job.status == Status.QUEUED and scheduled is not None and scheduled > now,
        )

    @property
    def list_status(self) -> str:
        """The status :meth:`Admin.jobs` files it under: ``scheduled`` when due later."""
        return "scheduled" if self.due_later else self.status


@dataclasses.dataclass
class JobPage(Record):
    """A page of jobs with some statuses.

    Attributes:
        statuses: The statuses asked for.
        jobs: The page, newest first (oldest first when ``oldest_first``).
        total: How many jobs have one of ``statuses``.
        offset: Where the page starts.
        limit: The page size asked for.
        totals: How many jobs have each status, every status included: ``queued``
            counts the due ones, ``scheduled`` the others.
        oldest_first: The page's order.
        truncated: A bound stopped the read before the page was full (see
            :data:`conveyor.admin.state.JOBS_SCAN` and
            :data:`conveyor.admin.state.JOBS_DEPTH`): jobs may be missing from it.
    """

    statuses: list[str]
    jobs: list[JobInfo]
    total: int
    offset: int
    limit: int
    totals: dict[str, int]
    oldest_first: bool
    truncated: bool


@dataclasses.dataclass
class CronEntry(Record):
    """One cron job: its schedule and its latest run.

    Attributes:
        name: The task it enqueues.
        queue: The queue it is enqueued on.
        doc: The task's docstring, cleaned.
        cron: The expression.
        tz: The zone it is read in.
        next_run: The next fire time.
        next_runs: The next fire times, ascending (``next_run`` first).
        timeout: The timeout of the jobs it creates, when set.
        kwargs: The arguments of those jobs.
        unique: Whether a slot is skipped while the previous run is unfinished.
        last_run: The newest run of a job this schedule created (run id, status, start
            ...), or None when the recent run history has none (see
            :data:`conveyor.admin.state.CRON_HISTORY_SCAN`).
    """

    name: str
    queue: str
    doc: str | None
    cron: str
    tz: str
    next_run: float
    next_runs: list[float]
    timeout: int | None
    kwargs: dict[str, Any]
    unique: bool
    last_run: RunSummary | None


@dataclasses.dataclass
class WorkerHealth(Record):
    """A worker's record as a health check sees it.

    Attributes:
        id: The worker's id.
        updated: When it last reported (it reports every ``stats`` period).
        age_s: Seconds since that report (None when its record has no time).
        alive: It counts as alive: its record has not expired and, when the check set a
            ``max_age_s``, its report is no older than that.
        hung: Sync attempts it stopped whose thread still runs (each holds a slot).
    """

    id: str
    updated: float | None
    age_s: float | None
    alive: bool
    hung: int = 0


@dataclasses.dataclass
class QueueHealth(Record):
    """The workers of one queue.

    Attributes:
        name: The queue's name.
        alive: How many live workers it has.
        last_report_age_s: Age of the freshest live worker's report (None without one).
        healthy: At least one worker is alive.
        workers: Every worker record found, alive or stale.
        hung: Hung sync threads of its live workers, together.
    """

    name: str
    alive: int
    last_report_age_s: float | None
    healthy: bool
    workers: list[WorkerHealth]
    hung: int = 0


@dataclasses.dataclass
class Health(Record):
    """Whether every queue has a live worker.

    Attributes:
        healthy: Every queue has at least one live worker.
        checked_at: When the check ran.
        workers: Live workers, all queues together.
        queues: Each queue's workers.
    """

    healthy: bool
    checked_at: float
    workers: int
    queues: list[QueueHealth]


__all__ = ["CronEntry", "Health", "JobInfo", "JobPage", "QueueHealth", "WorkerHealth"]
