"""Conveyor: an asyncio job queue with SAQ's API.

An embedded SQLite backend by default, Redis and PostgreSQL when it grows, an in-memory
backend for tests; crash-safe leases, batched storage operations, run records with their
logs. ``from conveyor import Queue, Worker, CronJob, Job, Status`` is all a SAQ user changes.
"""

from conveyor.cron import CronJob, CronSchedule
from conveyor.errors import (
    ArgumentsError,
    BackendError,
    ConfigurationError,
    ConveyorError,
    CronExpressionError,
    InvalidUrlError,
    JobError,
    JobNotFoundError,
    LeaseLostError,
    MissingDependencyError,
    SerializationError,
    SettingsImportError,
    UnknownFunctionError,
    UnsupportedURLError,
)
from conveyor.job import ACTIVE_STATUSES, TERMINAL_STATUSES, Job, Status
from conveyor.queue import Queue
from conveyor.tasks import Registry, Task, task
from conveyor.types import Context, SettingsDict
from conveyor.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "ArgumentsError",
    "BackendError",
    "ConfigurationError",
    "Context",
    "ConveyorError",
    "CronExpressionError",
    "CronJob",
    "CronSchedule",
    "InvalidUrlError",
    "Job",
    "JobError",
    "JobNotFoundError",
    "LeaseLostError",
    "MissingDependencyError",
    "Queue",
    "Registry",
    "SerializationError",
    "SettingsDict",
    "SettingsImportError",
    "Status",
    "Task",
    "UnknownFunctionError",
    "UnsupportedURLError",
    "Worker",
    "__version__",
    "task",
]
