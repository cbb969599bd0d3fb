"""Jobs and their statuses: plain data, no I/O.

A :class:`Job` has SAQ's fields, defaults and meanings. The methods that reach storage
(``refresh``, ``update``, ``abort`` ...) delegate to the job's queue, which holds the policy
(the state machine and its ownership rules are in :mod:`conveyor.lifecycle`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.queue import Queue


class Status(str, enum.Enum):
    """Where a job is in its life."""

    NEW = "new"
    QUEUED = "queued"
    ACTIVE = "active"
    ABORTING = "aborting"
    ABORTED = "aborted"
    FAILED = "failed"
    COMPLETE = "complete"


TERMINAL_STATUSES = frozenset({Status.COMPLETE, Status.FAILED, Status.ABORTED})
UNSUCCESSFUL_TERMINAL_STATUSES = frozenset({Status.FAILED, Status.ABORTED})
ACTIVE_STATUSES = frozenset({Status.QUEUED, Status.ACTIVE, Status.ABORTING})


class _DefaultInt(int):
    """An int that remembers it is a default, so queue and worker defaults may replace it."""


class _DefaultFloat(float):
    """A float that remembers it is a default."""


#: The policy fields whose default a queue or a worker may override.
POLICY_FIELDS = ("timeout", "heartbeat", "retries", "ttl", "retry_delay", "retry_backoff")
#: The fields that say how a job runs, which a cron job, a task handle or a console
#: enqueue may set on the jobs it makes.
JOB_OPTION_FIELDS = (*POLICY_FIELDS, "priority")


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)


def new_key() -> str:
    """A version-7 UUID as text (RFC 9562): the millisecond time, then 74 random bits.

    Every job without a key of its own gets one. Time-ordered keys land next to each other
    in a database's key index (cheaper inserts than random ones), sort by creation, and
    cost less to make than ``str(uuid.uuid4())``. The random bits come from :mod:`random`
    (seeded from the OS, and again in each forked process): keys must be unique, not
    secret, and this is a microsecond less per job than ``os.urandom``.
    """
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    h = "%032x" % (value & _UUID_FREE | _UUID_V7)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: The bits of a version-7 UUID that are not its version and variant, and those two.
_UUID_FREE = ~((0xF << 76) | (0x3 << 62))
_UUID_V7 = (0x7 << 76) | (0x2 << 62)


def is_default(value: Any) -> bool:
    """Whether a policy field still holds Conveyor's built-in default (was never set)."""
    return isinstance(value, _DefaultInt | _DefaultFloat)


@dataclasses.dataclass(eq=False)
class Job:
    """A unit of work: a function name, its keyword arguments and how to run it.

    Attributes:
        function: The registered name of the task function.
        kwargs: Keyword arguments for the function; must be serializable.
        queue: The queue the job belongs to (set when enqueued or loaded).
        key: Unique within a queue while the job is incomplete; a UUID by default.
        timeout: Seconds the job may run before it is cancelled; 0 means no limit.
        heartbeat: Seconds within which a running job must report liveness (0: no check).
        retries: The maximum number of attempts (SAQ semantics: 1 means no retry).
        ttl: Seconds a finished job is kept; 0 keeps it forever, -1 deletes it on finish.
        retry_delay: Seconds to wait before a retry.
        retry_backoff: Exponential backoff: ``True`` or a cap in seconds.
        scheduled: Epoch seconds before which the job does not start; 0 means now.
        progress: A number the task reports while it runs.
        attempts: How many times the job has started.
        completed: Epoch milliseconds when the job finished.
        queued: Epoch milliseconds when the job was enqueued.
        started: Epoch milliseconds when the current attempt started.
        touched: Epoch milliseconds of the latest change or heartbeat.
        result: The function's return value.
        error: The error of the latest failed attempt: its traceback when the task raised
            (as SAQ stores it; :attr:`error_summary` is its last line), else a one-line
            reason (a timeout, an abort's reason).
        status: The job's :class:`Status`.
        priority: Lower numbers run first; 0 by default.
        group_key: At most one job of a group runs at a time.
        meta: Free-form data attached by the user or Conveyor (trace context, trigger).
        worker_id: The worker running the current attempt.
    """

    function: str
    kwargs: dict[str, Any] | None = None
    queue: Queue | None = dataclasses.field(default=None, repr=False)
    key: str = dataclasses.field(default_factory=new_key)
    timeout: int = _DefaultInt(10)
    heartbeat: int = _DefaultInt(0)
    retries: int = _DefaultInt(1)
    ttl: int = _DefaultInt(600)
    retry_delay: float = _DefaultFloat(0.0)
    retry_backoff: bool | float = _DefaultInt(0)
    scheduled: int | float = 0
    progress: float = 0.0
    attempts: int = 0
    completed: int = 0
    queued: int = 0
    started: int = 0
    touched: int = 0
    result: Any = None
    error: str | None = None
    status: Status = Status.NEW
    priority: int = 0
    group_key: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    worker_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):
            self.status = Status(self.status)
        #: The fencing token of the lease this process holds on the job, when it claimed or
        #: recovered it (None otherwise). Every write about the attempt carries it; it is
        #: not stored with the job and not a field.
        self.lease_token: str | None = None

    def __repr__(self) -> str:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.info_dict(full=False).items())
        return f"Job<{kwargs}>"

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return self.key == other.key and self.queue_name == other.queue_name

    @property
    def id(self) -> str:
        """A globally unique id: the queue's name and the job's key."""
        return f"conveyor:job:{self.queue_name}:{self.key}"

    @property
    def error_summary(self) -> str | None:
        """The error in one line: the last line of the traceback that :attr:`error` holds
        (``ValueError: bad input``), or :attr:`error` itself when it is no traceback."""
        error = self.error
        if not error or not error.startswith("Traceback (most recent call last):"):
            return error
        lines = [line for line in error.splitlines() if line.strip()]
        return lines[-1].strip() if lines else error

    @property
    def queue_name(self) -> str | None:
        """The name of the job's queue, if it has one."""
        return self.queue.name if self.queue else None

    def info(self, full: bool = False) -> str:
        """The job as one line of text, SAQ's form: ``Job<function: f, queue: q, key: k ...>``.

        Lists the fields that differ from their defaults (the queue by its name, the
        status by its value); without ``full``, only those that name the job and say
        where it is in its life (function, queue, key, attempts and times, worker).

        Args:
            full: List every field that is not at its default (arguments, result, error,
                status, options ...).
        """
        fields = self.info_dict(full=False)
        if "queue" in fields:  # SAQ's order: the queue after the arguments
            fields = {
                "function": fields.pop("function"),
                "kwargs": fields.pop("kwargs", None),
                "queue": fields.pop("queue"),
                **fields,
            }
            if fields["kwargs"] is None:
                del fields["kwargs"]
        if not full:
            fields = {k: v for k, v in fields.items() if k in _BRIEF_FIELDS}
        return "Job<" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + ">"

    def info_dict(self, full: bool = False) -> dict[str, Any]:
        """A summary of the job for displays, as a dict (what :meth:`info` writes as text).

        Args:
            full: Include every field, not only those that differ from their defaults.

        Returns:
            A dict of field names to values, the status as its value and the queue as its
            name.
        """
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            if field.name == "queue":
                continue
            value = getattr(self, field.name)
            if not full and _is_field_default(field, value) and field.name != "key":
                continue
            out[field.name] = value.value if isinstance(value, Status) else value
        if self.queue_name:
            out["queue"] = self.queue_name
        return out

    def to_dict(self) -> dict[str, Any]:
        """The job as a plain dict, with SAQ's keys.

        The fields that differ from their defaults (``function`` and ``key`` always, ``meta``
        when not empty, ``status`` unless ``new``), and ``queue`` as the queue's name when
        the job has one. :meth:`from_dict` reads it back.

        Returns:
            A dict of JSON-friendly values.
        """
        out = self.stored_dict()
        if out["status"] == Status.NEW.value:
            del out["status"]
        if self.queue is not None:
            out["queue"] = self.queue.name
        return out

    def stored_dict(self) -> dict[str, Any]:
        """The job as a queue stores it: :meth:`to_dict` without the queue's name (the
        queue is where it is stored), with the status always.

        Fields that still hold their defaults are left out, so a default stays a default
        (and may be replaced by a queue's or a worker's) when the job is loaded again.
        """
        fields = self.__dict__
        out: dict[str, Any] = {name: fields[name] for name in _ALWAYS_FIELDS}
        for name, default in _PLAIN_FIELDS:
            value = fields[name]
            # Compared only with values of the default's own plain type: a result's own
            # ``!=`` (a numpy array's, a DataFrame's) may raise or not return a bool.
            if value is not default and (
                value.__class__ is not default.__class__ or value != default
            ):
                out[name] = value
        for name in _POLICY_NAMES:
            value = fields[name]
            if value.__class__ is not _DefaultInt and value.__class__ is not _DefaultFloat:
                out[name] = value
        for name in _EMPTY_NAMES:
            value = fields[name]
            if value:
                out[name] = value
        out["status"] = self.status.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], queue: Queue | None = None) -> Job:
        """Build a job from :meth:`to_dict` output.

        Args:
            data: The stored dict; unknown keys are ignored so that newer writers don't
                break older readers, and so is ``queue`` (a name).
            queue: The queue to attach.

        Returns:
            The job.
        """
        known = _FIELD_NAMES
        job = cls(**{k: v for k, v in data.items() if k in known and k != "queue"})
        job.queue = queue
        return job

    def duration(self, kind: str) -> int | None:
        """A duration in milliseconds.

        Args:
            kind: ``process`` (started to completed), ``start`` (queued to started),
                ``total`` (queued to completed) or ``running`` (started to now).

        Returns:
            Milliseconds, or None when the timestamps needed are not set.

        Raises:
            ValueError: For an unknown kind.
        """
        spans: dict[str, tuple[int, int]] = {
            "process": (self.started, self.completed),
            "start": (self.queued, self.started),
            "total": (self.queued, self.completed),
            "running": (self.started, now_ms()),
        }
        if kind not in spans:
            raise ValueError(f"unknown duration kind {kind!r}; use one of {', '.join(spans)}")
        start, end = spans[kind]
        if not start or not end:
            return None
        return end - start

    @property
    def stuck(self) -> bool:
        """Whether a running job (``active`` or ``aborting``) has outlived its timeout or
        missed its heartbeat."""
        if self.status not in (Status.ACTIVE, Status.ABORTING):
            return False
        now = now_ms()
        if self.timeout and self.started and now - self.started > self.timeout * 1000:
            return True
        return bool(self.heartbeat and self.touched and now - self.touched > self.heartbeat * 1000)

    @property
    def retryable(self) -> bool:
        """Whether another attempt is allowed."""
        return self.retries > self.attempts

    def next_retry_delay(self) -> float:
        """Seconds to wait before the next attempt.

        With ``retry_backoff`` the delay grows exponentially from ``retry_delay`` (full
        jitter), capped at ``retry_backoff`` seconds when it is a number.
        """
        return next_retry_delay(float(self.retry_delay), self.retry_backoff, max(self.attempts, 1))

    def ready_at(self) -> float:
        """Epoch seconds at which the job may start."""
        return float(self.scheduled or 0)

    # Storage operations: the queue holds the policy; these only forward.

    def _require_queue(self) -> Queue:
        if self.queue is None:
            raise ValueError(f"job {self.function!r} (key {self.key!r}) has no queue")
        return self.queue

    async def enqueue(self, queue: Queue | None = None) -> Job | None:
        """Enqueue this job on ``queue`` (or its own queue).

        When an incomplete job with the same key is stored already, this job is reloaded
        from it (its fields become the stored job's), as in SAQ.

        Returns:
            This job when it was stored, None when it was reloaded instead.

        Raises:
            ValueError: The job belongs to another queue than ``queue``.
        """
        target = queue or self._require_queue()
        stored = await target.enqueue(self)
        if stored is None:
            await self.refresh()
        return stored

    async def abort(self, error: str = "aborted", ttl: float = 5) -> None:
        """Abort the job: a queued job never starts, a running one is cancelled."""
        await self._require_queue().abort(self, error, ttl)

    async def finish(self, status: Status, *, result: Any = None, error: str | None = None) -> None:
        """Mark the job finished with ``status``."""
        await self._require_queue().finish(self, status, result=result, error=error)

    async def retry(self, error: str | None = None) -> None:
        """Queue the job for another attempt."""
        await self._require_queue().retry(self, error)

    async def update(self, **kwargs: Any) -> None:
        """Change fields (``progress``, ``meta`` ...) and store them; listeners are told.

        A new ``status`` goes through the step of the job's life that makes it (see
        :meth:`conveyor.queue.Queue.update`)."""
        await self._require_queue().update(self, **kwargs)

    async def refresh(
        self, until_complete: float | None = None, poll_interval: float = 0.5
    ) -> None:
        """Reload the job from storage.

        Args:
            until_complete: Wait up to this many seconds for the job to finish; 0 waits
                forever. None reloads once without waiting.
            poll_interval: Ignored (SAQ's): the backend tells when the job changes.

        Raises:
            TimeoutError: When the job did not finish in time.
            JobNotFoundError: When the job no longer exists.
        """
        job = await self._require_queue().refresh(self, until_complete)
        self.replace(job)

    def replace(self, job: Job) -> None:
        """Copy every field of ``job`` into this one."""
        for field in dataclasses.fields(self):
            if field.name != "queue":
                setattr(self, field.name, getattr(job, field.name))


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Job))
#: The fields :meth:`Job.info` lists without ``full`` (SAQ's short form).
_BRIEF_FIELDS = frozenset(
    {
        "function",
        "queue",
        "key",
        "attempts",
        "completed",
        "queued",
        "started",
        "touched",
        "worker_id",
    }
)

# How to_dict decides, per field, whether a value is a default to leave out; computed once
# from the dataclass (to_dict runs for every job written, so it avoids dataclasses.fields).
# "function" and "key" are always stored; a default-factory field when it is not empty; a
# policy field when it is not a default marker; any other field when it differs from its
# default. The queue is not stored, and the status is stored last, as its value.
_ALWAYS_FIELDS = ("function", "key")
_STORED = [f for f in dataclasses.fields(Job) if f.name not in ("queue", "status", *_ALWAYS_FIELDS)]
_EMPTY_NAMES = tuple(f.name for f in _STORED if f.default is dataclasses.MISSING)
_POLICY_NAMES = tuple(f.name for f in _STORED if is_default(f.default))
_PLAIN_FIELDS: tuple[tuple[str, Any], ...] = tuple(
    (f.name, f.default)
    for f in _STORED
    if f.default is not dataclasses.MISSING and not is_default(f.default)
)
del _STORED


def _is_field_default(field: dataclasses.Field[Any], value: Any) -> bool:
    if field.default is not dataclasses.MISSING:
        if is_default(field.default):
            return is_default(value)
        return bool(value == field.default)
    if field.default_factory is not dataclasses.MISSING and field.name != "key":
        return bool(value == field.default_factory())
    return False


def next_retry_delay(delay: float, backoff: bool | float, attempts: int) -> float:
    """Backoff math: the delay before retry number ``attempts``.

    Args:
        delay: The base delay in seconds.
        backoff: False for a constant delay; True or a cap in seconds for exponential
            growth with full jitter.
        attempts: Attempts made so far (at least 1).

    Returns:
        Seconds to wait.
    """
    if not backoff:
        return delay
    cap = math.inf if backoff is True else float(backoff)
    exponential = min(cap, delay * (2 ** (attempts - 1)))
    return random.uniform(0, exponential)


def apply_defaults(job: Job, defaults: dict[str, Any], getter: Callable[[Job, str], Any]) -> None:
    """Replace built-in defaults of ``job`` with ``defaults`` where the job never set a value.

    Args:
        job: The job to change.
        defaults: Field name to value, for fields in :data:`POLICY_FIELDS`.
        getter: How to read a field (``getattr`` in practice; injectable for tests).
    """
    for name, value in defaults.items():
        if value is None:
            continue
        if name not in POLICY_FIELDS:
            raise ValueError(f"{name!r} is not a job default; use one of {POLICY_FIELDS}")
        if is_default(getter(job, name)):
            setattr(job, name, value)


# SAQ keeps CronJob in its job module; ``from conveyor.job import CronJob`` works the same.
# It lives in conveyor.cron (which builds on this module), so it is imported on first use.
if TYPE_CHECKING:
    from conveyor.cron import CronJob


def __getattr__(name: str) -> Any:
    if name == "CronJob":
        from conveyor.cron import CronJob

        return CronJob
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "UNSUCCESSFUL_TERMINAL_STATUSES",
    "CronJob",
    "Job",
    "Status",
]
