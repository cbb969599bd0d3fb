"""The admin service that every front end (console, CLI, metrics exporter) goes through.

:class:`Admin` reads the queues' state (jobs by status, cron jobs, worker health), run
history and logs, describes the registered tasks, and carries out actions (enqueue, retry,
abort, purge), logging who did each. Its answers are typed records with a JSON-friendly
``to_dict()``.
"""

from conveyor.admin.models import (
    AvailableJob,
    CronInfo,
    FunctionStats,
    LogEntry,
    LogPage,
    Overview,
    ParameterInfo,
    QueueState,
    RunDetail,
    RunningJob,
    RunPage,
    RunSummary,
    Throughput,
    ThroughputBucket,
    WorkerInfo,
)
from conveyor.admin.service import Admin
from conveyor.admin.state_models import (
    CronEntry,
    Health,
    JobInfo,
    JobPage,
    QueueHealth,
    WorkerHealth,
)
from conveyor.errors import AdminError, JobStateError, RunNotFoundError, UnknownQueueError

__all__ = [
    "Admin",
    "AdminError",
    "AvailableJob",
    "CronEntry",
    "CronInfo",
    "FunctionStats",
    "Health",
    "JobInfo",
    "JobPage",
    "JobStateError",
    "LogEntry",
    "LogPage",
    "Overview",
    "ParameterInfo",
    "QueueHealth",
    "QueueState",
    "RunDetail",
    "RunNotFoundError",
    "RunPage",
    "RunSummary",
    "RunningJob",
    "Throughput",
    "ThroughputBucket",
    "UnknownQueueError",
    "WorkerHealth",
    "WorkerInfo",
]
