"""Typing names that SAQ users import from ``saq.types``, under the same names.

``Context`` is a plain ``dict[str, Any]``, not a ``TypedDict``: tasks and hooks store their
own resources in it (``ctx["db"] = pool``), and under ``mypy --strict`` a ``TypedDict``
refuses keys it does not declare. The keys Conveyor itself sets are listed in
:data:`CONTEXT_KEYS`.
"""

from __future__ import annotations

from asyncio import Task
from collections.abc import Awaitable, Callable, Iterable
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypedDict, TypeVar

if TYPE_CHECKING:
    from conveyor.cron import CronJob
    from conveyor.job import Job, Status
    from conveyor.queue import Queue

#: What a task function, a hook and ``before_process``/``after_process`` receive first.
Context: TypeAlias = dict[str, Any]

#: The keys Conveyor sets in a context: ``worker``, ``queue``, ``job`` (while a job runs)
#: and ``exception`` (in ``after_process``, when the attempt failed).
CONTEXT_KEYS = ("worker", "queue", "job", "exception")

#: A task function: ``fn(ctx, **kwargs)``, async or sync.
Function: TypeAlias = Callable[..., Any]


class ReceivesContext(Protocol):
    """A hook: ``startup``, ``shutdown``, ``before_process`` or ``after_process``."""

    def __call__(self, ctx: Context, /) -> Awaitable[Any] | Any:
        """Called with the worker's context."""


class TimersDict(TypedDict, total=False):
    """Seconds between the worker's periodic duties; any key may be left out."""

    schedule: float
    stats: float
    sweep: float
    abort: float
    logs: float


class SettingsDict(TypedDict, total=False):
    """A worker's settings, as SAQ's ``saq.types.SettingsDict`` (every key optional)."""

    queue: Queue
    functions: Iterable[Any]
    concurrency: int
    cron_jobs: Iterable[CronJob]
    cron_tz: tzinfo | str
    startup: ReceivesContext | Iterable[ReceivesContext]
    shutdown: ReceivesContext | Iterable[ReceivesContext]
    before_process: ReceivesContext | Iterable[ReceivesContext]
    after_process: ReceivesContext | Iterable[ReceivesContext]
    timers: TimersDict
    dequeue_timeout: float
    burst: bool
    max_burst_jobs: int
    shutdown_grace_period_s: float
    cancellation_hard_deadline_s: float
    metadata: dict[str, Any]
    id: str
    defaults: dict[str, Any]
    lease_s: float
    retention_s: float | None
    capture_logs: bool
    log_level: int


# SAQ's other type names, for the annotations of code that moves over from SAQ.

#: A ``register_before_enqueue`` callback.
BeforeEnqueueType: TypeAlias = "Callable[[Job], Awaitable[Any] | Any]"
#: What ``Queue.count`` counts.
CountKind: TypeAlias = Literal["queued", "active", "incomplete", "scheduled"]
#: A queue's serializer (``dump=``) and deserializer (``load=``).
DumpType: TypeAlias = Callable[[Any], bytes | str]
LoadType: TypeAlias = Callable[[bytes | str], Any]
#: What ``Job.duration`` measures.
DurationKind: TypeAlias = Literal["process", "start", "total", "running"]
#: A ``Queue.listen`` callback.
ListenCallback: TypeAlias = "Callable[[str, Status], Awaitable[Any] | Any]"
VersionTuple: TypeAlias = tuple[int, ...]
#: The ``functions`` of a worker: functions, or ``(name, function)`` pairs.
FunctionsType: TypeAlias = Iterable[Function | tuple[str, Function]]
#: The worker's ``timers`` argument (every key optional, as :class:`TimersDict`).
PartialTimersDict: TypeAlias = TimersDict
#: A context type of the user's (SAQ's generic parameter).
CtxType = TypeVar("CtxType", bound=Context)


class JobTaskContext(TypedDict, total=False):
    """The task running a job and whether it was aborted."""

    task: Task[Any]
    aborted: str | None


class WorkerStats(TypedDict):
    """A worker's counters, and its uptime in milliseconds."""

    complete: int
    failed: int
    retried: int
    aborted: int
    uptime: int


#: SAQ's older name of :class:`WorkerStats`.
QueueStats: TypeAlias = WorkerStats


class WorkerInfo(TypedDict):
    """What ``Queue.info()`` says of one worker."""

    queue_key: str | None
    stats: WorkerStats | None
    metadata: dict[str, Any] | None


class QueueInfo(TypedDict):
    """What ``Queue.info()`` returns."""

    workers: dict[str, Any]
    name: str
    queued: int
    active: int
    scheduled: int
    jobs: list[dict[str, Any]]


__all__ = [
    "CONTEXT_KEYS",
    "BeforeEnqueueType",
    "Context",
    "CountKind",
    "CtxType",
    "DumpType",
    "DurationKind",
    "Function",
    "FunctionsType",
    "JobTaskContext",
    "ListenCallback",
    "LoadType",
    "PartialTimersDict",
    "QueueInfo",
    "QueueStats",
    "ReceivesContext",
    "SettingsDict",
    "TimersDict",
    "VersionTuple",
    "WorkerInfo",
    "WorkerStats",
]
