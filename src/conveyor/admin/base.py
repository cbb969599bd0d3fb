"""The admin service's base: the queues and tasks it serves, and how it finds things."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import tzinfo
from typing import Any, Self

from conveyor.admin.signatures import task_callable
from conveyor.backends.base import RunRecord
from conveyor.cron import CronJob
from conveyor.errors import ConfigurationError, RunNotFoundError, UnknownQueueError
from conveyor.job import Job
from conveyor.queue import Queue

Functions = Mapping[str, Callable[..., Any]]


class AdminBase:
    """The queues and tasks an admin service serves; see :class:`conveyor.admin.Admin`.

    Args:
        queues: The queue, or queues, served; the first is the default for actions.
        functions: Task name to callable or task handle, as the worker registers them;
            needed for :meth:`available_jobs`, :meth:`check_arguments` and :meth:`enqueue`.
        cron_jobs: The worker's cron jobs (their functions are registered too): a sequence,
            run on the first queue, or a mapping of queue name to that queue's cron jobs.
        cron_tz: The worker's ``cron_tz``.

    Attributes:
        queues: The queues served.
        functions: Task name to the plain function (what signatures are read from).
        registered: Task name to what was registered: a task handle (carrying its job
            options) or the function itself.
        cron_jobs_by_queue: Queue name to the cron jobs its workers run.
        cron_tz: The zone of cron jobs that set none (UTC when None).

    Raises:
        ConfigurationError: Without a queue, with two queues of one name, or with cron jobs
            of a queue not served.
    """

    def __init__(
        self,
        queues: Queue | Sequence[Queue],
        functions: Functions | None = None,
        cron_jobs: Sequence[CronJob] | Mapping[str, Sequence[CronJob]] = (),
        cron_tz: tzinfo | str | None = None,
    ) -> None:
        self.queues = [queues] if isinstance(queues, Queue) else list(queues)
        if not self.queues:
            raise ConfigurationError("Admin needs at least one queue")
        names = [q.name for q in self.queues]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"Admin was given two queues of one name: {names}")
        self.registered: dict[str, Any] = dict(functions or {})
        self.functions = {name: task_callable(fn) for name, fn in self.registered.items()}
        by_queue = cron_jobs if isinstance(cron_jobs, Mapping) else {names[0]: cron_jobs}
        unknown = sorted(set(by_queue) - set(names))
        if unknown:
            raise ConfigurationError(
                f"cron jobs were given for queue(s) {', '.join(unknown)}, which Admin does not "
                f"serve; it serves {', '.join(names)}"
            )
        self.cron_jobs_by_queue = {name: list(jobs) for name, jobs in by_queue.items() if jobs}
        for cron in self.cron_jobs:
            self.functions.setdefault(cron.name, task_callable(cron.function))
        self.cron_tz = cron_tz
        self._connected_here: list[Queue] = []

    @property
    def cron_jobs(self) -> list[CronJob]:
        """Every cron job, of every queue."""
        return [cron for jobs in self.cron_jobs_by_queue.values() for cron in jobs]

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Self:
        """The admin service of a worker's settings dict (``Worker(**settings)``).

        Reads ``queue``, ``functions``, ``cron_jobs`` and ``cron_tz``; without ``queue``,
        the worker's default queue.
        """
        from conveyor.observability.retention import DEFAULT_RETENTION_S, with_retention
        from conveyor.worker.functions import normalize_functions

        queue = settings.get("queue")
        if queue is None:
            from conveyor.settings import DEFAULT_QUEUE_URL

            queue = Queue.from_url(DEFAULT_QUEUE_URL)
        if not isinstance(queue, Queue):
            raise ConfigurationError(
                f"the 'queue' setting is a {type(queue).__name__}; expected a Queue"
            )
        given = settings.get("functions") or ()
        crons = with_retention(
            settings.get("cron_jobs") or (), settings.get("retention_s", DEFAULT_RETENTION_S)
        )
        functions, cron_jobs = normalize_functions(given, crons)
        # Task handles carry job options (a timeout ...) that a console enqueue applies.
        return cls(queue, {**functions, **_handles(given)}, cron_jobs, settings.get("cron_tz"))

    @classmethod
    def from_settings_list(cls, settings_list: Sequence[Mapping[str, Any]]) -> Self:
        """One admin service over the queues of several workers' settings dicts.

        Each settings dict is read as :meth:`from_settings` reads it, then they are
        combined as :meth:`merge` combines admin services.

        Raises:
            ConfigurationError: Without settings, or when two settings use one queue name.
        """
        if not settings_list:
            raise ConfigurationError("Admin.from_settings_list needs at least one settings dict")
        admins = [cls.from_settings(settings) for settings in settings_list]
        return admins[0] if len(admins) == 1 else cls.merge(*admins)

    @classmethod
    def merge(cls, *admins: AdminBase) -> Self:
        """One admin service over the queues of several.

        Every queue is served, in order (the first admin's first queue is the default for
        actions). A task name registered by several admins is the first one's. Each cron
        job stays with its queue and keeps its zone: one that sets no ``tz`` gets its
        admin's ``cron_tz``.

        Raises:
            ConfigurationError: Without an admin, or when two serve a queue of one name.
        """
        if not admins:
            raise ConfigurationError("Admin.merge needs at least one admin service")
        registered: dict[str, Any] = {}
        crons: dict[str, list[CronJob]] = {}
        for admin in admins:
            for name, fn in admin.registered.items():
                registered.setdefault(name, fn)
            for queue_name, jobs in admin.cron_jobs_by_queue.items():
                crons.setdefault(queue_name, []).extend(
                    _in_zone(cron, admin.cron_tz) for cron in jobs
                )
        first_tz = admins[0].cron_tz
        common_tz = first_tz if all(admin.cron_tz == first_tz for admin in admins) else None
        return cls([q for admin in admins for q in admin.queues], registered, crons, common_tz)

    def __repr__(self) -> str:
        return f"Admin<queues={[q.name for q in self.queues]}>"

    # Lifecycle

    async def connect(self) -> None:
        """Connect every queue not yet connected. Idempotent; every method calls it."""
        for queue in self.queues:
            if not queue._connected:
                await queue.connect()
                self._connected_here.append(queue)

    async def disconnect(self) -> None:
        """Disconnect the queues this service connected (not those connected elsewhere)."""
        while self._connected_here:
            await self._connected_here.pop().disconnect()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    def _select(self, queue: str | None) -> list[Queue]:
        if queue is None:
            return self.queues
        for candidate in self.queues:
            if candidate.name == queue:
                return [candidate]
        raise UnknownQueueError(queue, (q.name for q in self.queues))

    async def _find_run(self, run_id: str, queue: str | None) -> tuple[Queue, RunRecord]:
        await self.connect()
        selected = self._select(queue)
        for q in selected:
            record = await q.backend.get_run(str(run_id))
            if record is not None:
                return q, record
        raise RunNotFoundError(str(run_id), (q.name for q in selected))

    async def _find_job(self, key: str, queue: str | None) -> tuple[Queue, Job | None]:
        await self.connect()
        selected = self._select(queue)
        for q in selected:
            job = await q.job(key)
            if job is not None:
                return q, job
        return selected[0], None


def _in_zone(cron: CronJob, tz: tzinfo | str | None) -> CronJob:
    """``cron`` read in ``tz`` when it sets no zone of its own."""
    if cron.tz is not None or tz is None:
        return cron
    return dataclasses.replace(cron, tz=tz)


def _handles(functions: Any) -> dict[str, Any]:
    """Task handles (objects with ``name``, ``fn`` and ``job_options``) among ``functions``,
    including those of registries, by name."""
    items: list[Any] = []
    for item in [functions] if hasattr(functions, "cron_jobs") else list(functions):
        is_registry = hasattr(item, "functions") and hasattr(item, "cron_jobs")
        items.extend(item.functions if is_registry else [item])
    return {
        item.name: item
        for item in items
        if isinstance(getattr(item, "name", None), str) and hasattr(item, "fn")
    }


__all__ = ["AdminBase", "Functions"]
