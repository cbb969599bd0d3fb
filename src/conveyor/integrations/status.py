"""Job status for HTTP clients: trigger a task, then read its status, result and runs.

The framework-neutral half of the status routes. :class:`JobStatusService` triggers tasks
through :meth:`Admin.enqueue <conveyor.admin.Admin.enqueue>` (which checks the arguments
against the task's signature) and reads a job back with its run history; :func:`problem`
turns its errors into an HTTP status and a JSON body. Each framework adapter only maps
requests and responses:

* ``POST {prefix}/{task_name}`` with a JSON object of arguments: 202 and the job's key;
  404 for a task that cannot be triggered; 422 with an error per argument.
* ``GET {prefix}/jobs/{key}``: status, result or error, progress and runs; 404 for a key
  no queue knows.

Error bodies are ``{"detail": "...", "errors": {"argument": "what is wrong"}}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from conveyor.admin import AdminError, RunSummary, UnknownQueueError
from conveyor.admin.models import json_friendly
from conveyor.errors import (
    ArgumentsError,
    ConfigurationError,
    JobNotFoundError,
    UnknownFunctionError,
)
from conveyor.integrations.core import Conveyor
from conveyor.job import Job

#: Runs listed in a job's history, at most (the newest).
MAX_RUNS = 100
#: A run's status, as the status of a job whose row has expired.
_RUN_TO_JOB = {"running": "active", "retried": "queued"}


@dataclasses.dataclass
class JobAccepted:
    """The answer to a trigger: the job was enqueued.

    Attributes:
        key: The job's key, for ``GET {prefix}/jobs/{key}``.
        queue: The queue it was enqueued on.
        task: The task's name.
        status: ``queued``.
    """

    key: str
    queue: str
    task: str
    status: str = "queued"

    def to_dict(self) -> dict[str, Any]:
        """As JSON-friendly data."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class JobReport:
    """A job's status, as a client polls it.

    Attributes:
        key: The job's key.
        queue: Its queue.
        task: Its task's name.
        status: ``queued``, ``active``, ``aborting``, ``complete``, ``failed`` or
            ``aborted``.
        result: The task's return value, once complete.
        error: The error of the latest failed attempt.
        progress: What the task last reported (``await ctx["job"].update(progress=...)``).
        attempts: How many times it started.
        queued: When it was enqueued (epoch seconds).
        scheduled: When it may start, for a job enqueued to run later.
        started: When its latest attempt started.
        completed: When it finished.
        runs: Its attempts, oldest first.
    """

    key: str
    queue: str
    task: str
    status: str
    result: Any = None
    error: str | None = None
    progress: float = 0.0
    attempts: int = 0
    queued: float | None = None
    scheduled: float | None = None
    started: float | None = None
    completed: float | None = None
    runs: list[RunSummary] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As JSON-friendly data (a result JSON cannot hold becomes its ``repr``)."""
        data = dataclasses.asdict(self)
        data["runs"] = [run.to_dict() for run in self.runs]
        return json_friendly(data)  # type: ignore[no-any-return]


def _seconds(ms: int) -> float | None:
    return ms / 1000 if ms else None


class JobStatusService:
    """Triggers tasks of a :class:`Conveyor` by name and reports on their jobs.

    Args:
        conveyor: The application's queues.
        tasks: The tasks that may be triggered; every task of every queue by default
            (the retention purge and other internal tasks excepted).

    Raises:
        ConfigurationError: When ``tasks`` names a task no queue runs.
    """

    def __init__(self, conveyor: Conveyor, tasks: Iterable[str] | None = None) -> None:
        self.conveyor = conveyor
        owners = conveyor.task_queues
        if tasks is None:
            self.tasks = dict(owners)
        else:
            wanted = [tasks] if isinstance(tasks, str) else list(tasks)
            unknown = sorted(set(wanted) - set(owners))
            if unknown:
                raise ConfigurationError(
                    f"status routes: no queue runs {unknown}; the tasks are "
                    f"{', '.join(sorted(owners)) or '(none)'}"
                )
            self.tasks = {name: owners[name] for name in wanted}

    async def trigger(
        self, task: str, args: Mapping[str, Any] | None, *, actor: str | None = None
    ) -> JobAccepted:
        """Check ``args`` against the task's signature and enqueue it on its queue.

        Args:
            task: The task's name.
            args: Its arguments, as decoded from JSON.
            actor: Who asked, for the audit log and the run history.

        Raises:
            UnknownFunctionError: When the task cannot be triggered here.
            ArgumentsError: Naming each argument that is unknown, missing or mistyped.
        """
        queue = self.tasks.get(task)
        if queue is None:
            raise UnknownFunctionError(task, self.tasks)
        key = await self.conveyor.admin.enqueue(task, args, queue=queue, trigger="api", actor=actor)
        return JobAccepted(key=key, queue=queue, task=task)

    async def report(self, key: str) -> JobReport:
        """The job with ``key`` on any queue, with its runs.

        When the job has expired (its ``ttl``), it is described from its run history,
        which is kept longer.

        Raises:
            JobNotFoundError: When no queue knows the key.
        """
        admin = self.conveyor.admin
        for queue in self.conveyor.queues:
            job = await queue.job(key)
            page = await admin.runs(key=key, queue=queue.name, limit=MAX_RUNS)
            runs = list(reversed(page.runs))
            if job is not None:
                return self._from_job(job, queue.name, runs)
            if runs:
                return await self._from_runs(key, queue.name, runs)
        raise JobNotFoundError(key, ", ".join(q.name for q in self.conveyor.queues))

    @staticmethod
    def _from_job(job: Job, queue: str, runs: list[RunSummary]) -> JobReport:
        return JobReport(
            key=job.key,
            queue=queue,
            task=job.function,
            status=job.status.value,
            result=job.result,
            error=job.error_summary,  # one line, as the run's; never the traceback
            progress=job.progress,
            attempts=job.attempts,
            queued=_seconds(job.queued),
            scheduled=float(job.scheduled) if job.scheduled else None,
            started=_seconds(job.started),
            completed=_seconds(job.completed),
            runs=runs,
        )

    async def _from_runs(self, key: str, queue: str, runs: list[RunSummary]) -> JobReport:
        latest = runs[-1]
        detail = await self.conveyor.admin.run(latest.run_id, queue=queue)
        status = _RUN_TO_JOB.get(latest.status, latest.status)
        return JobReport(
            key=key,
            queue=queue,
            task=latest.function,
            status=status,
            result=detail.result,
            error=latest.error,
            progress=detail.progress or (1.0 if status == "complete" else 0.0),
            attempts=latest.attempt,
            queued=None,
            started=latest.started,
            completed=latest.finished,
            runs=runs,
        )


def status_path(trigger_path: str, key: str) -> str:
    """Where the status of a job is read, from the path that triggered it (``.../{task}``)."""
    return f"{trigger_path.rsplit('/', 1)[0]}/jobs/{quote(key, safe='')}"


def problem(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    """The HTTP status and JSON body of a status route's error, or None for other errors.

    ``UnknownFunctionError``, ``JobNotFoundError`` and ``UnknownQueueError`` are 404;
    ``ArgumentsError`` is 422 with ``errors``, one entry per argument; other
    ``AdminError`` are 400.
    """
    if isinstance(exc, ArgumentsError):
        return 422, {"detail": str(exc), "errors": dict(exc.errors)}
    if isinstance(exc, UnknownFunctionError):
        names = ", ".join(exc.known) or "(none)"
        detail = f"no task named {exc.function!r} can be triggered here; the tasks are {names}"
        return 404, {"detail": detail, "errors": {}}
    if isinstance(exc, JobNotFoundError | UnknownQueueError):
        return 404, {"detail": str(exc), "errors": {}}
    if isinstance(exc, AdminError):
        return 400, {"detail": str(exc), "errors": {}}
    return None


__all__ = ["MAX_RUNS", "JobAccepted", "JobReport", "JobStatusService", "problem", "status_path"]
