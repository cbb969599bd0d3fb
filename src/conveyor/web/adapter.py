"""What the console needs that :class:`~conveyor.admin.service.Admin` does not offer yet.

Thin, read-only helpers over the admin service's queues: listing jobs by state, the cron
table with each schedule's last run, whether workers are alive, and one admin service over
several settings. Changes to jobs still go through the admin service only.
"""

from __future__ import annotations

import heapq
import inspect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.admin.errors import AdminError
from conveyor.admin.models import AvailableJob, json_friendly
from conveyor.admin.service import Admin
from conveyor.errors import ConfigurationError
from conveyor.job import Job
from conveyor.queue import Queue

#: The job lists of the Jobs page, and the statuses each shows.
JOB_STATES: dict[str, tuple[str, ...]] = {
    "queued": ("queued",),
    "running": ("active", "aborting"),
    "failed": ("failed", "aborted"),
}
MAX_JOBS_PAGE = 500


@dataclass
class JobRow:
    """A job as the Jobs page and ``/api/jobs`` show it."""

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

    @classmethod
    def from_job(cls, job: Job, queue: str) -> JobRow:
        """Build from a core job."""
        meta = job.meta or {}
        return cls(
            key=job.key,
            queue=queue,
            function=job.function,
            status=job.status.value,
            kwargs=json_friendly(dict(job.kwargs or {})),
            queued=job.queued / 1000 if job.queued else None,
            scheduled=float(job.scheduled) if job.scheduled else None,
            started=job.started / 1000 if job.started else None,
            attempts=job.attempts,
            retries=int(job.retries),
            error=job.error,
            progress=float(job.progress or 0.0),
            worker_id=job.worker_id,
            run_id=str(meta["run_id"]) if meta.get("run_id") is not None else None,
            actor=str(meta["actor"]) if meta.get("actor") is not None else None,
        )

    @property
    def due_later(self) -> bool:
        """A queued job waiting for its scheduled time."""
        return self.status == "queued" and bool(self.scheduled and self.scheduled > time.time())

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["due_later"] = self.due_later
        return data


@dataclass
class JobPage:
    """A page of jobs in one state."""

    state: str
    jobs: list[JobRow]
    total: int
    offset: int
    limit: int
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "state": self.state,
            "jobs": [j.to_dict() for j in self.jobs],
            "total": self.total,
            "offset": self.offset,
            "limit": self.limit,
            "counts": self.counts,
        }


def select_queues(admin: Admin, queue: str | None) -> list[Queue]:
    """The admin service's queues, or the one named."""
    if queue is None:
        return list(admin.queues)
    found = [q for q in admin.queues if q.name == queue]
    if not found:
        from conveyor.admin.errors import UnknownQueueError

        raise UnknownQueueError(queue, (q.name for q in admin.queues))
    return found


async def state_counts(admin: Admin, queue: str | None = None) -> dict[str, int]:
    """How many jobs each list of the Jobs page holds."""
    await admin.connect()
    statuses = sorted({s for group in JOB_STATES.values() for s in group})
    totals = dict.fromkeys(statuses, 0)
    for q in select_queues(admin, queue):
        for status, count in (await q.backend.count(statuses)).items():
            totals[status] += count
    return {state: sum(totals[s] for s in group) for state, group in JOB_STATES.items()}


async def list_jobs(
    admin: Admin, state: str, offset: int = 0, limit: int = 50, queue: str | None = None
) -> JobPage:
    """Jobs in one state (``queued``, ``running`` or ``failed``), newest first.

    Raises:
        AdminError: For an unknown state or a bad page.
    """
    if state not in JOB_STATES:
        raise AdminError(f"unknown job state {state!r}; use one of {', '.join(JOB_STATES)}")
    if offset < 0 or not 1 <= limit <= MAX_JOBS_PAGE:
        raise AdminError(f"offset must be 0 or more and limit 1 to {MAX_JOBS_PAGE}")
    counts = await state_counts(admin, queue)
    pages: list[list[JobRow]] = []
    for q in select_queues(admin, queue):
        rows = await q.backend.list_jobs(list(JOB_STATES[state]), 0, offset + limit)
        jobs = [q.deserialize(row) for row in rows]
        pages.append([JobRow.from_job(j, q.name) for j in jobs if j is not None])
    merged = list(heapq.merge(*pages, key=lambda j: j.queued or 0.0, reverse=True))
    return JobPage(
        state=state,
        jobs=merged[offset : offset + limit],
        total=counts[state],
        offset=offset,
        limit=limit,
        counts=counts,
    )


async def available_jobs(admin: Admin) -> list[AvailableJob]:
    """The admin service's tasks (its ``available_jobs`` may be sync or async)."""
    result: Any = admin.available_jobs()
    if inspect.isawaitable(result):
        result = await result
    return list(result)


async def cron_table(admin: Admin) -> list[dict[str, Any]]:
    """Every cron schedule: task, expression, zone, next run, and the task's last run."""
    rows = []
    for job in await available_jobs(admin):
        if not job.schedules:
            continue
        page = await admin.runs(function=job.name, limit=1)
        last = page.runs[0].to_dict() if page.runs else None
        for schedule in job.schedules:
            rows.append(
                {
                    "name": job.name,
                    "doc": job.doc,
                    "cron": schedule.cron,
                    "tz": schedule.tz,
                    "next_run": schedule.next_run,
                    "timeout": schedule.timeout,
                    "kwargs": json_friendly(schedule.kwargs),
                    "unique": schedule.unique,
                    "last_run": last,
                }
            )
    return rows


def health(overview_workers: Sequence[Any], queues: Sequence[str]) -> dict[str, Any]:
    """Whether each queue has a live worker (the records expire when not refreshed)."""
    alive = {name: 0 for name in queues}
    for worker in overview_workers:
        alive[worker.queue] = alive.get(worker.queue, 0) + 1
    healthy = bool(alive) and all(alive.values())
    return {
        "status": "ok" if healthy else "unavailable",
        "healthy": healthy,
        "workers": sum(alive.values()),
        "queues": alive,
    }


def admin_from_settings_list(settings_list: Sequence[Mapping[str, Any]]) -> Admin:
    """One admin service over the queues of several worker settings.

    Functions and cron jobs of all the settings are offered; ``cron_tz`` is the first one's.

    Raises:
        ConfigurationError: Without settings, or when two settings use one queue name.
    """
    if not settings_list:
        raise ConfigurationError("the console needs at least one settings dict")
    admins = [Admin.from_settings(s) for s in settings_list]
    if len(admins) == 1:
        return admins[0]
    queues = [q for a in admins for q in a.queues]
    functions: dict[str, Any] = {}
    for a in admins:
        for name, fn in a._handles.items():
            functions.setdefault(name, fn)
    cron_jobs = [c for a in admins for c in a.cron_jobs]
    return Admin(queues, functions, cron_jobs, admins[0].cron_tz)


__all__ = [
    "JOB_STATES",
    "JobPage",
    "JobRow",
    "admin_from_settings_list",
    "available_jobs",
    "cron_table",
    "health",
    "list_jobs",
    "select_queues",
    "state_counts",
]
