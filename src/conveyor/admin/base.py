"""The admin service's base: the queues and tasks it serves, and how it finds things."""

from __future__ import annotations

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
        functions: Task name to callable, as the worker registers them; needed for
            :meth:`available_jobs`, :meth:`check_arguments` and :meth:`enqueue`.
        cron_jobs: The worker's cron jobs (their functions are registered too).
        cron_tz: The worker's ``cron_tz``.

    Raises:
        ConfigurationError: Without a queue, or with two queues of one name.
    """

    def __init__(
        self,
        queues: Queue | Sequence[Queue],
        functions: Functions | None = None,
        cron_jobs: Sequence[CronJob] = (),
        cron_tz: tzinfo | str | None = None,
    ) -> None:
        self.queues = [queues] if isinstance(queues, Queue) else list(queues)
        if not self.queues:
            raise ConfigurationError("Admin needs at least one queue")
        names = [q.name for q in self.queues]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"Admin was given two queues of one name: {names}")
        self.functions = {name: task_callable(fn) for name, fn in (functions or {}).items()}
        self.cron_jobs = list(cron_jobs)
        for cron in self.cron_jobs:
            self.functions.setdefault(cron.name, task_callable(cron.function))
        self._handles = dict(functions or {})
        self.cron_tz = cron_tz
        self._connected_here: list[Queue] = []

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
