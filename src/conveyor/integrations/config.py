"""One queue of a web application: where it lives, what runs on it, how its worker runs.

A :class:`QueueConfig` is plain configuration. It builds no connection: the queue is
connected by :class:`conveyor.integrations.Conveyor` when the application starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from typing import Any

from conveyor.cron import CronJob
from conveyor.errors import ConfigurationError
from conveyor.queue import Queue
from conveyor.settings import DEFAULT_QUEUE_URL, check_settings
from conveyor.tasks import Registry
from conveyor.worker.functions import normalize_functions

#: Worker settings that :class:`QueueConfig` sets from its own arguments.
_RESERVED = {
    "queue": "url= or queue=",
    "functions": "tasks=",
    "cron_jobs": "scheduled_tasks=",
    "cron_tz": "cron_tz=",
}


class QueueConfig:
    """A named queue, its tasks and cron jobs, and the settings of the worker that runs it.

    Args:
        name: The queue's name; jobs of differently named queues never mix.
        url: Where the queue lives (``sqlite:///jobs.db``, ``redis://...``,
            ``postgresql://...``); ``sqlite://`` (``conveyor.db`` in the working directory)
            when neither ``url`` nor ``queue`` is given.
        queue: A queue built by hand (``Queue.from_url(url, defaults=...)``), instead of
            ``url``; its name must be ``name``.
        tasks: Task functions, task handles, ``(name, function)`` pairs, or registries
            (whose cron jobs come along), as a worker's ``functions``.
        scheduled_tasks: :class:`~conveyor.cron.CronJob` definitions.
        cron_tz: The zone of cron expressions that name none (UTC by default).
        **worker_settings: Any other setting of :class:`~conveyor.worker.Worker`, as in a
            SAQ settings dict: ``concurrency``, ``startup``, ``shutdown``,
            ``before_process``, ``after_process``, ``timers``, ``retention_s`` ...

    Raises:
        ConfigurationError: For both ``url`` and ``queue``, a queue of another name, a
            misspelt worker setting (named, with the closest known one), a worker setting
            that has its own argument here, or two functions under one task name.

    Example::

        QueueConfig(
            "emails",
            url="redis://localhost:6379/0",
            tasks=[send_email, registry],
            scheduled_tasks=[CronJob(digest, cron="0 7 * * *")],
            cron_tz="America/New_York",
            concurrency=20,
        )
    """

    def __init__(
        self,
        name: str = "default",
        *,
        url: str | None = None,
        queue: Queue | None = None,
        tasks: Registry | Iterable[Any] = (),
        scheduled_tasks: Iterable[CronJob] = (),
        cron_tz: tzinfo | str | None = None,
        **worker_settings: Any,
    ) -> None:
        if url is not None and queue is not None:
            raise ConfigurationError(f"queue {name!r}: give url= or queue=, not both")
        if queue is not None and queue.name != name:
            raise ConfigurationError(
                f"queue {name!r}: the queue given is named {queue.name!r}; "
                f"use QueueConfig({queue.name!r}, queue=...) or rename the queue"
            )
        reserved = sorted(set(worker_settings) & set(_RESERVED))
        if reserved:
            hints = ", ".join(f"{key!r} (use {_RESERVED[key]})" for key in reserved)
            raise ConfigurationError(f"queue {name!r}: {hints}")
        self.name = name
        self.url = url
        self.queue = (
            queue if queue is not None else Queue.from_url(url or DEFAULT_QUEUE_URL, name=name)
        )
        self.tasks: list[Any] = [tasks] if isinstance(tasks, Registry) else list(tasks)
        self.scheduled_tasks = list(scheduled_tasks)
        self.cron_tz = cron_tz
        self.worker_settings = dict(worker_settings)
        try:
            check_settings(self.settings())
            self.functions, self.cron_jobs = normalize_functions(self.tasks, self.scheduled_tasks)
        except ConfigurationError as exc:
            raise ConfigurationError(f"queue {name!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"QueueConfig<name={self.name!r}, tasks={sorted(self.functions)}>"

    @property
    def task_names(self) -> list[str]:
        """The names of this queue's tasks (those of its cron jobs included), sorted."""
        return sorted(self.functions)

    def settings(self) -> dict[str, Any]:
        """The worker settings dict of this queue: ``Worker(**config.settings())``.

        Hand it to ``conveyor`` to run the worker in its own process; a zero-argument
        function returning it is a settings path (``conveyor myapp.worker_settings``).
        """
        return {
            "queue": self.queue,
            "functions": list(self.tasks),
            "cron_jobs": list(self.scheduled_tasks),
            "cron_tz": self.cron_tz,
            **self.worker_settings,
        }


__all__ = ["QueueConfig"]
