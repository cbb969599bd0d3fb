"""Errors of the admin service; each derives from :class:`conveyor.errors.ConveyorError`.

The tree below ``ConveyorError``::

    AdminError              a request the admin service cannot carry out as asked
    ├── RunNotFoundError    no run with that id (never existed, or purged)
    ├── UnknownQueueError   a queue name the service was not given
    └── JobStateError       an action that the job's current status does not allow

Argument problems raise :class:`conveyor.errors.ArgumentsError`, unknown task names
:class:`conveyor.errors.UnknownFunctionError` and missing jobs
:class:`conveyor.errors.JobNotFoundError`, as everywhere else in Conveyor.
"""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.errors import ConveyorError


class AdminError(ConveyorError):
    """A request the admin service cannot carry out as asked (a bad filter, level or time)."""


class RunNotFoundError(AdminError):
    """No run with the given id exists in the queues searched.

    Attributes:
        run_id: The id looked up.
        queues: The names of the queues searched.
    """

    def __init__(self, run_id: str, queues: Iterable[str]) -> None:
        self.run_id = run_id
        self.queues = list(queues)
        super().__init__(
            f"no run with id {run_id!r} in queue(s) {', '.join(self.queues)}: it never existed "
            "or was purged by the retention period"
        )


class UnknownQueueError(AdminError):
    """A queue name that the admin service does not serve.

    Attributes:
        queue: The name asked for.
        known: The names served.
    """

    def __init__(self, queue: str, known: Iterable[str]) -> None:
        self.queue = queue
        self.known = sorted(known)
        super().__init__(f"no queue named {queue!r}; known queues: {', '.join(self.known)}")


class JobStateError(AdminError):
    """An action that the job's status does not allow (retrying a running job ...).

    Attributes:
        key: The job's key.
        status: Its current status.
    """

    def __init__(self, key: str, status: str, reason: str) -> None:
        self.key = key
        self.status = status
        super().__init__(f"job {key!r} is {status}: {reason}")


__all__ = ["AdminError", "JobStateError", "RunNotFoundError", "UnknownQueueError"]
