"""What the admin service returns: typed records with a JSON-friendly ``to_dict()``.

Times are epoch seconds (floats), durations seconds. Values that came from users' code
(arguments, results, log extras, worker metadata) pass through :func:`json_friendly`, so
``json.dumps(x.to_dict())`` always works whatever serializer the queue uses.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from conveyor.backends.base import RunRecord


def json_friendly(value: Any) -> Any:
    """``value`` with anything JSON cannot hold replaced by its ``repr``.

    An ``Enum`` member becomes its value.
    Tuples become lists, non-string dict keys strings, and NaN or infinite floats their
    repr, so the result always goes through ``json.dumps``.
    """
    if isinstance(value, enum.Enum):
        return json_friendly(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        return [json_friendly(item) for item in value]
    if isinstance(value, dict):
        return {str(k): json_friendly(v) for k, v in value.items()}
    return repr(value)


class Record:
    """Base of the result records: ``to_dict()`` for JSON answers."""

    def to_dict(self) -> dict[str, Any]:
        """The record as plain, JSON-serializable data."""
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return json_friendly(data)  # type: ignore[no-any-return]


def _seconds(ms: int) -> float | None:
    return ms / 1000 if ms else None


@dataclasses.dataclass
class RunningJob(Record):
    """A job a worker is running.

    Attributes:
        key: The job's key.
        function: Its task name (empty when the job is gone).
        started: When the attempt started.
    """

    key: str
    function: str
    started: float | None


@dataclasses.dataclass
class WorkerInfo(Record):
    """A live worker, as it last published itself.

    Attributes:
        id: The worker's id.
        queue: The queue it works on.
        concurrency: How many jobs it runs at once.
        started: When it started.
        updated: When it last published (its record is up to one ``stats`` period old).
        running: What it runs.
        stats: Attempts it ended, by outcome.
        functions: The task names it knows.
        metadata: The ``metadata`` setting of the worker.
        hung: Sync attempts it stopped whose thread still runs (each holds a slot).
    """

    id: str
    queue: str
    concurrency: int
    started: float | None
    updated: float | None
    running: list[RunningJob]
    stats: dict[str, int]
    functions: list[str]
    metadata: dict[str, Any]
    hung: int = 0


@dataclasses.dataclass
class QueueState(Record):
    """A queue right now.

    Attributes:
        name: The queue's name.
        queued: Jobs waiting that are due.
        active: Jobs running (or being aborted).
        scheduled: Jobs waiting for a later time.
        latency_s: Age of the oldest due job (0 when none waits).
        latency_exact: False when the queue was too long to scan in full and
            ``latency_s`` is a lower bound (see :data:`conveyor.admin.service.LATENCY_SCAN`).
        workers: Its live workers.
    """

    name: str
    queued: int
    active: int
    scheduled: int
    latency_s: float
    latency_exact: bool
    workers: list[WorkerInfo]


@dataclasses.dataclass
class Overview(Record):
    """The dashboard numbers.

    Attributes:
        window_s: The period ``completed`` and ``failed`` count (24 h by default).
        completed: Runs that completed in the window.
        failed: Runs that failed in the window (a run that is retried is not counted).
        queued: Jobs waiting that are due, now.
        running: Jobs running now.
        scheduled: Jobs waiting for a later time, now.
        workers: Live workers and what each runs.
        queues: The per-queue breakdown.
    """

    window_s: float
    completed: int
    failed: int
    queued: int
    running: int
    scheduled: int
    workers: list[WorkerInfo]
    queues: list[QueueState]


@dataclasses.dataclass
class RunSummary(Record):
    """One attempt of one job, as listed.

    Attributes:
        run_id: The run's id.
        queue: The queue it ran on.
        key: The job's key.
        function: The task name.
        attempt: 1 for the first attempt.
        worker_id: The worker that ran it.
        status: ``running``, ``complete``, ``failed``, ``aborted`` or ``retried``.
        started: When it started.
        finished: When it ended (None while running).
        duration_s: How long it ran (None while running).
        error: The error message, if any.
    """

    run_id: str
    queue: str
    key: str
    function: str
    attempt: int
    worker_id: str | None
    status: str
    started: float | None
    finished: float | None
    duration_s: float | None
    error: str | None

    @classmethod
    def from_record(cls, record: RunRecord, queue: str) -> RunSummary:
        """Build from a backend record."""
        duration = None
        if record.finished_ms and record.started_ms:
            duration = max(record.finished_ms - record.started_ms, 0) / 1000
        return cls(
            run_id=record.run_id,
            queue=queue,
            key=record.key,
            function=record.function,
            attempt=record.attempt,
            worker_id=record.worker_id,
            status=record.status,
            started=_seconds(record.started_ms),
            finished=_seconds(record.finished_ms),
            duration_s=duration,
            error=record.error,
        )


@dataclasses.dataclass
class RunPage(Record):
    """A page of runs, newest first.

    Attributes:
        runs: The page.
        total: How many runs match the filters in all.
        offset: Where the page starts.
        limit: The page size asked for.
    """

    runs: list[RunSummary]
    total: int
    offset: int
    limit: int


@dataclasses.dataclass
class RunDetail(Record):
    """Everything about one run.

    Attributes:
        run: The run itself.
        kwargs: The arguments it ran with.
        result: Its return value (complete runs).
        traceback: The formatted traceback (failed runs).
        trigger: What created the job: ``enqueued``, ``cron``, ``console``, ``cli`` ...
        actor: Who enqueued or retried it from a front end, when known.
        cron: The cron expression, for cron runs.
        scheduled_for: The slot or time the job was scheduled for.
        job_status: The job's status now; None when its row has expired.
        progress: The job's progress now, when it still exists.
        attempts: Every run of the same job key, oldest first (at most
            :data:`conveyor.admin.service.MAX_ATTEMPTS`).
    """

    run: RunSummary
    kwargs: dict[str, Any]
    result: Any
    traceback: str | None
    trigger: str | None
    actor: str | None
    cron: str | None
    scheduled_for: float | None
    job_status: str | None
    progress: float | None
    attempts: list[RunSummary]


@dataclasses.dataclass
class LogEntry(Record):
    """One captured log line.

    Attributes:
        seq: Its position in the run; the cursor for the next page.
        ts: When it was emitted.
        level: The level name.
        message: The formatted message (with the traceback, if one was logged).
        extra: Logger name, file, line, function and extra fields.
    """

    seq: int
    ts: float
    level: str
    message: str
    extra: dict[str, Any]


@dataclasses.dataclass
class LogPage(Record):
    """A page of a run's log lines.

    Attributes:
        run_id: The run.
        lines: The lines that matched, in order.
        next_cursor: Pass as ``cursor`` for the next page. It moves past every line read,
            matched or not, so that filtered reading always makes progress.
        more: Lines after ``next_cursor`` may already exist: read again at once rather than
            waiting (False: everything stored so far was read).
        run_status: The run's status, so a follower knows when to stop.
    """

    run_id: str
    lines: list[LogEntry]
    next_cursor: int
    more: bool
    run_status: str


@dataclasses.dataclass
class ThroughputBucket(Record):
    """Runs started in one time bucket.

    Attributes:
        start: The bucket's start.
        counts: Runs by status.
    """

    start: float
    counts: dict[str, int]


@dataclasses.dataclass
class FunctionStats(Record):
    """Runs of one task in the window.

    Attributes:
        function: The task name.
        runs: Runs started in the window.
        counts: Those runs by status.
        mean_s: Mean duration of the finished ones (None when none finished).
        p95_s: 95th percentile duration, nearest rank (None when none finished).
    """

    function: str
    runs: int
    counts: dict[str, int]
    mean_s: float | None
    p95_s: float | None


@dataclasses.dataclass
class Throughput(Record):
    """Runs over time.

    Attributes:
        since: The window's start.
        until: The window's end.
        bucket_s: The bucket width.
        buckets: Every bucket of the window, oldest first, empty ones included.
        functions: Per-task counts and durations, by name.
        sampled: The runs read.
        total: The runs that started in the window.
        truncated: True when ``total`` exceeded the read bound: the oldest runs of the
            window were left out (see :data:`conveyor.admin.service.MAX_THROUGHPUT_RUNS`).
    """

    since: float
    until: float
    bucket_s: float
    buckets: list[ThroughputBucket]
    functions: list[FunctionStats]
    sampled: int
    total: int
    truncated: bool


@dataclasses.dataclass
class ParameterInfo(Record):
    """One parameter of a task function.

    Attributes:
        name: Its name.
        kind: ``positional_or_keyword``, ``keyword_only``, ``var_keyword`` ...
        annotation: The annotation as written, or None.
        required: Whether it has no default.
        default: The default (JSON-friendly; a repr string when JSON cannot hold it), or
            None when required.
        choices: The values a ``Literal`` or ``Enum`` annotation allows, else None.
    """

    name: str
    kind: str
    annotation: str | None
    required: bool
    default: Any
    choices: list[Any] | None = None


@dataclasses.dataclass
class CronInfo(Record):
    """One cron schedule of a task.

    Attributes:
        cron: The expression.
        tz: The zone it is read in.
        timeout: The timeout of the jobs it creates, when set.
        kwargs: The arguments of those jobs.
        unique: Whether a slot is skipped while the previous run is unfinished.
        next_run: The next slot.
    """

    cron: str
    tz: str
    timeout: int | None
    kwargs: dict[str, Any]
    unique: bool
    next_run: float


@dataclasses.dataclass
class AvailableJob(Record):
    """A task that can be enqueued.

    Attributes:
        name: The registered name.
        category: ``cron`` when a cron job runs it, else ``function``.
        doc: The docstring, cleaned.
        parameters: Its parameters, ``ctx`` left out.
        accepts_any: It takes ``**kwargs`` (or its signature cannot be read): any
            argument name is accepted.
        cron: The first schedule's expression, when it has one.
        tz: The first schedule's zone.
        timeout: The timeout a console enqueue uses, when the task or its cron job sets one.
        schedules: Every cron schedule of the task.
    """

    name: str
    category: str
    doc: str | None
    parameters: list[ParameterInfo]
    accepts_any: bool
    cron: str | None
    tz: str | None
    timeout: int | None
    schedules: list[CronInfo]


__all__ = [
    "AvailableJob",
    "CronInfo",
    "FunctionStats",
    "LogEntry",
    "LogPage",
    "Overview",
    "ParameterInfo",
    "QueueState",
    "Record",
    "RunDetail",
    "RunPage",
    "RunSummary",
    "RunningJob",
    "Throughput",
    "ThroughputBucket",
    "WorkerInfo",
    "json_friendly",
]
