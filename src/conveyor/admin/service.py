"""The admin service: the one place the console, the CLI and the exporters read and change
queues through.

:class:`Admin` adds to the queries of :class:`~conveyor.admin.queries.AdminQueries` and
:class:`~conveyor.admin.state.AdminState` the registered tasks (what can be enqueued, with
which arguments) and the actions. Actions change jobs only through the
:class:`~conveyor.queue.Queue` facade, so policy stays in the core, and each one is logged
with who did it on the ``conveyor.admin`` logger.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from conveyor.admin import helpers
from conveyor.admin.models import AvailableJob, CronInfo
from conveyor.admin.signatures import check_arguments, describe_parameters
from conveyor.admin.state import AdminState
from conveyor.backends.base import RunFilter
from conveyor.cron import CronJob
from conveyor.errors import JobNotFoundError, JobStateError, UnknownFunctionError
from conveyor.job import (
    JOB_OPTION_FIELDS,
    TERMINAL_STATUSES,
    UNSUCCESSFUL_TERMINAL_STATUSES,
    Job,
    Status,
)
from conveyor.observability.retention import purge_runs_older_than
from conveyor.queue import Queue

logger = logging.getLogger("conveyor.admin")

#: Meta keys the core sets on a job for one attempt; a retry does not carry them over.
_ATTEMPT_META = frozenset({"run_id", "once", "once_ttl", "trace"})
#: Job fields a console enqueue or retry carries over.
_JOB_OPTIONS = JOB_OPTION_FIELDS
_JOB_STATUSES = frozenset(s.value for s in Status)


class Admin(AdminState):
    """Queries and actions over one or more queues.

    Args:
        queues: The queue, or queues, served; the first is the default for actions.
        functions: Task name to callable or task handle, as the worker registers them;
            needed for :meth:`available_jobs`, :meth:`check_arguments` and :meth:`enqueue`.
        cron_jobs: The worker's cron jobs (their functions are registered too): a sequence,
            run on the first queue, or a mapping of queue name to that queue's cron jobs.
        cron_tz: The worker's ``cron_tz``.

    Raises:
        ConfigurationError: Without a queue, with two queues of one name, or with cron jobs
            of a queue not served.

    Several workers' settings make one service with :meth:`from_settings_list`, several
    services one with :meth:`merge`.

    Example::

        async with Admin.from_settings(settings) as admin:
            page = await admin.runs(status="failed", limit=20)
            waiting = await admin.jobs(["queued", "scheduled"], limit=20)
            key = await admin.enqueue("send_report", {"day": "2025-01-31"}, actor="ops")
    """

    # Tasks

    async def available_jobs(self) -> list[AvailableJob]:
        """Every registered task and its cron schedules, with its parameters, by name.

        A coroutine like every other query, though it reads no storage: front ends await
        it, whichever admin service they are given.
        """
        crons: dict[str, list[CronJob]] = {}
        for cron in self.cron_jobs:
            crons.setdefault(cron.name, []).append(cron)
        now = time.time()
        out = []
        for name in sorted(self.functions):
            fn = self.functions[name]
            parameters, accepts_any = describe_parameters(fn)
            schedules = [self._cron_info(cron, now) for cron in crons.get(name, [])]
            first = schedules[0] if schedules else None
            out.append(
                AvailableJob(
                    name=name,
                    category="cron" if schedules else "function",
                    doc=inspect.getdoc(fn),
                    parameters=parameters,
                    accepts_any=accepts_any,
                    cron=first.cron if first else None,
                    tz=first.tz if first else None,
                    timeout=self._job_options(name).get("timeout"),
                    schedules=schedules,
                )
            )
        return out

    def _cron_info(self, cron: CronJob, now: float) -> CronInfo:
        schedule = cron.schedule(self.cron_tz)
        return CronInfo(
            cron=cron.cron,
            tz=str(schedule.tz),
            timeout=cron.job_kwargs().get("timeout"),
            kwargs=dict(cron.kwargs or {}),
            unique=cron.unique,
            next_run=schedule.next_after(now),
        )

    def _job_options(self, name: str) -> dict[str, Any]:
        """The job fields a console enqueue of ``name`` uses: its task handle's options,
        then its first cron job's (a job run by hand gets the timeout it gets on schedule)."""
        options: dict[str, Any] = {}
        handle_options = getattr(self.registered.get(name), "job_options", None)
        if isinstance(handle_options, Mapping):
            options.update({k: v for k, v in handle_options.items() if v is not None})
        for cron in self.cron_jobs:
            if cron.name == name:
                options.update(cron.job_kwargs())
                break
        return {k: v for k, v in options.items() if k in _JOB_OPTIONS}

    async def check_arguments(self, name: str, args: Mapping[str, Any] | None) -> None:
        """Check that ``args`` fit task ``name`` before it is enqueued.

        Raises:
            UnknownFunctionError: When no task is registered as ``name``, naming those that are.
            ArgumentsError: Naming each argument that is unknown, missing or of the wrong
                JSON type (for simple annotations).
        """
        fn = self.functions.get(name)
        if fn is None:
            raise UnknownFunctionError(name, self.functions)
        check_arguments(name, fn, args)

    # Actions

    def _audit(self, action: str, actor: str | None, **details: Any) -> None:
        text = ", ".join(f"{k}={v!r}" for k, v in details.items())
        logger.info(
            "admin %s by %s: %s",
            action,
            actor or "unknown",
            text,
            extra={"admin_action": action, "actor": actor or "unknown"},
        )

    async def enqueue(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        scheduled_at: float | datetime | None = None,
        queue: str | None = None,
        trigger: str = "console",
        actor: str | None = None,
    ) -> str:
        """Check the arguments, then enqueue task ``name``.

        The job gets the timeout and other options its task handle or cron job sets, and
        ``meta["trigger"]`` (and ``meta["actor"]``), which its runs record.

        Args:
            name: The task.
            args: Its arguments.
            scheduled_at: When to run it (epoch s or aware datetime); now by default.
            queue: The queue; the first one by default.
            trigger: What the run history shows as its origin.
            actor: Who asked, for the audit log and the run.

        Returns:
            The new job's key.

        Raises:
            UnknownFunctionError, ArgumentsError: As :meth:`check_arguments`.
            UnknownQueueError: For a queue this service does not serve.
        """
        await self.check_arguments(name, args)
        [target] = self._select(queue) if queue is not None else self.queues[:1]
        scheduled = helpers.epoch(scheduled_at, "scheduled_at") if scheduled_at is not None else 0
        meta: dict[str, Any] = {"trigger": trigger}
        if actor is not None:
            meta["actor"] = actor
        job = Job(
            function=name,
            kwargs=dict(args or {}) or None,
            scheduled=scheduled,
            meta=meta,
            **self._job_options(name),
        )
        await self.connect()
        await target.enqueue(job)
        self._audit("enqueue", actor, function=name, key=job.key, queue=target.name)
        return job.key

    async def retry(
        self,
        key: str,
        *,
        queue: str | None = None,
        trigger: str = "console",
        actor: str | None = None,
    ) -> str:
        """Run a failed or aborted job again, with the same function and arguments.

        The job keeps its key, so its runs line up in one history; it is enqueued afresh
        (status ``queued``, due now) and gets its full ``retries`` budget again, so the
        new run's ``attempt`` starts at 1. When the job's row has expired, it is rebuilt
        from its latest run, whose arguments the run history keeps.

        Returns:
            The key.

        Raises:
            JobNotFoundError: When neither the job nor a run of it exists.
            JobStateError: When the job is not failed or aborted.
        """
        target, job = await self._find_job(key, queue)
        if job is None:
            target, job = await self._job_from_history(key, queue)
        if job.status not in UNSUCCESSFUL_TERMINAL_STATUSES:
            raise JobStateError(key, job.status.value, "only failed or aborted jobs can be retried")
        meta = {k: v for k, v in job.meta.items() if k not in _ATTEMPT_META}
        meta.update({"trigger": trigger, "retry_of": job.meta.get("run_id")})
        if actor is not None:
            meta["actor"] = actor
        again = Job(function=job.function, kwargs=job.kwargs, key=key, meta=meta)
        for field in (*_JOB_OPTIONS, "group_key"):
            setattr(again, field, getattr(job, field))
        if await target.enqueue(again) is None:
            raise JobStateError(key, "queued", "it was enqueued again meanwhile")
        self._audit("retry", actor, key=key, function=job.function, queue=target.name)
        return key

    async def _job_from_history(self, key: str, queue: str | None) -> tuple[Queue, Job]:
        for q in self._select(queue):
            records, _ = await q.backend.list_runs(RunFilter(key=key), 0, 1)
            if not records:
                continue
            record = records[0]
            detail = q.load(record.detail) if record.detail else {}
            status = Status(record.status) if record.status in _JOB_STATUSES else Status.ACTIVE
            job = Job(function=record.function, kwargs=detail.get("kwargs"), key=key)
            job.status = status
            job.meta = {"run_id": record.run_id}
            return q, job
        names = ", ".join(q.name for q in self._select(queue))
        raise JobNotFoundError(key, names)

    async def abort(
        self,
        key: str,
        reason: str = "aborted from the console",
        *,
        queue: str | None = None,
        actor: str | None = None,
    ) -> str:
        """Abort a job: a queued one never runs; a running one is cancelled by its worker.

        Returns:
            The job's status afterwards: ``aborted``, or ``aborting`` until its worker
            has stopped it.

        Raises:
            JobNotFoundError: When the job does not exist.
            JobStateError: When it has already finished.
        """
        target, job = await self._find_job(key, queue)
        if job is None:
            raise JobNotFoundError(key, ", ".join(q.name for q in self._select(queue)))
        if job.status in TERMINAL_STATUSES:
            raise JobStateError(key, job.status.value, "it has already finished")
        await target.abort(key, reason)
        self._audit("abort", actor, key=key, reason=reason, queue=target.name)
        after = await target.job(key)
        return after.status.value if after is not None else Status.ABORTED.value

    async def purge(
        self, older_than_s: float, *, queue: str | None = None, actor: str | None = None
    ) -> int:
        """Delete finished runs older than ``older_than_s`` seconds, with their logs.

        Returns:
            How many runs were deleted.
        """
        await self.connect()
        deleted = 0
        for q in self._select(queue):
            deleted += await purge_runs_older_than(q.backend, older_than_s)
        self._audit("purge", actor, older_than_s=older_than_s, deleted=deleted)
        return deleted


__all__ = ["Admin"]
