"""The admin service's errors, kept importable from here; they live in :mod:`conveyor.errors`.

Their place in the tree below ``ConveyorError``::

    AdminError              a request the admin service cannot carry out as asked
    ├── RunNotFoundError    no run with that id (never existed, or purged)
    ├── UnknownQueueError   a queue name the service was not given
    └── JobStateError       an action that the job's current status does not allow

Argument problems raise :class:`conveyor.errors.ArgumentsError`, unknown task names
:class:`conveyor.errors.UnknownFunctionError` and missing jobs
:class:`conveyor.errors.JobNotFoundError`, as everywhere else in Conveyor.
"""

from __future__ import annotations

from conveyor.errors import AdminError, JobStateError, RunNotFoundError, UnknownQueueError

__all__ = ["AdminError", "JobStateError", "RunNotFoundError", "UnknownQueueError"]
