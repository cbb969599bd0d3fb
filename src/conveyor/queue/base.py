"""The Queue: every policy decision about a job's life, over one backend.

Defaults, hooks, enqueueing, reading and waiting are decided here, once; a job's next
state, and who may write it, by :mod:`conveyor.lifecycle` (the state machine and its
ownership rules), which the queue calls. The backend only performs the atomic operations of
:mod:`conveyor.backends.base`. SAQ's ``Queue`` API is kept name for name, so code written
against ``saq.Queue`` runs unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import time
import traceback as tb_module
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from conveyor import lifecycle
from conveyor.backends import backend_for_urls
from conveyor.backends.base import Backend, JobRow, NewJob, Transition
from conveyor.errors import (
    ConfigurationError,
    InvalidUrlError,
    JobError,
    JobNotFoundError,
    LeaseLostError,
)
from conveyor.job import (
    POLICY_FIELDS,
    TERMINAL_STATUSES,
    UNSUCCESSFUL_TERMINAL_STATUSES,
    Job,
    Status,
    apply_defaults,
    now_ms,
)
from conveyor.serialization import Dumper, Loader, default_dump, default_load, dump_job, dump_value

if TYPE_CHECKING:
    from conveyor.observability.instrumentation import Instrumentation
    from conveyor.tasks import Task

logger = logging.getLogger("conveyor.queue")

BeforeEnqueue = Callable[[Job], Awaitable[Any] | Any]
ListenCallback = Callable[[str, Status], Awaitable[Any] | Any]

_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job)) - {"function", "kwargs", "queue"}
#: The keyword arguments of :meth:`Queue.from_url` that go to the queue; the rest go to the
#: backend.
_QUEUE_OPTIONS = frozenset(
    {"name", "dump", "load", "defaults", "swept_error_message", "instrumentation"}
)
#: The error recorded on a job whose worker died, unless the queue is given another.
_SWEPT_ERROR_MESSAGE = "worker died while running the job (lease expired)"
#: The class of the queue that :meth:`Queue.from_url` returns for a scheme: SAQ's classes,
#: so that ``isinstance(Queue.from_url("redis://..."), RedisQueue)`` holds as in SAQ.
_QUEUE_CLASSES = {
    "redis": ("conveyor.queue.redis", "RedisQueue"),
    "rediss": ("conveyor.queue.redis", "RedisQueue"),
    "unix": ("conveyor.queue.redis", "RedisQueue"),
    "postgres": ("conveyor.queue.postgres", "PostgresQueue"),
    "postgresql": ("conveyor.queue.postgres", "PostgresQueue"),
    "http": ("conveyor.queue.http", "HttpQueue"),
    "https": ("conveyor.queue.http", "HttpQueue"),
}
#: The longest single wait between two reads in :meth:`Queue.wait` and :meth:`Queue.listen`:
#: a notification lost to a dropped connection costs at most this, never the whole wait.
_MAX_WAIT_SLICE = 1.0
#: The kinds :meth:`Queue.count` counts, SAQ's meanings: ``queued`` is due now (not
#: scheduled for later); ``active`` and ``incomplete`` leave out the jobs being aborted.
_COUNT_KINDS = ("queued", "active", "scheduled", "incomplete")


class Queue:
    """A named queue of jobs on one backend.

    Args:
        backend: The storage engine (see :meth:`from_url`).
        name: The queue's name; queues with different names share nothing.
        dump: Serializer for stored jobs; ``json.dumps`` by default.
        load: Deserializer matching ``dump``.
        defaults: Defaults for the policy fields of jobs enqueued here (``timeout``,
            ``retries``, ``ttl``, ``retry_delay``, ``retry_backoff``, ``heartbeat``); a value
            given on the job itself wins.
        swept_error_message: The error recorded on a job whose worker died (None: the
            default message, as SAQ's None is).
        instrumentation: Metrics and tracing hooks
            (:class:`conveyor.observability.instrumentation.Instrumentation`).
    """

    #: The URL schemes that :meth:`from_url` accepts on this class: all of them here, an
    #: engine's on SAQ's engine classes (``RedisQueue``, ``PostgresQueue``).
    url_schemes: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        backend: Backend,
        name: str = "default",
        dump: Dumper | None = None,
        load: Loader | None = None,
        defaults: dict[str, Any] | None = None,
        swept_error_message: str | None = None,
        instrumentation: Sequence[Instrumentation] = (),
    ) -> None:
        self.backend = backend
        self.name = name
        self._dump = dump or default_dump
        self._load = load or default_load
        self.defaults = dict(defaults or {})
        for field in self.defaults:
            if field not in POLICY_FIELDS:
                raise ValueError(f"{field!r} is not a job default; use one of {POLICY_FIELDS}")
        self.swept_error_message = swept_error_message or _SWEPT_ERROR_MESSAGE
        self.instrumentation = list(instrumentation)
        self._before_enqueues: dict[int, BeforeEnqueue] = {}
        self._connected = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}<name={self.name!r}, backend={self.backend.name}>"

    @classmethod
    def from_url(cls, url: str, runs_url: str | None = None, **kwargs: Any) -> Queue:
        """Build a queue from a URL.

        Args:
            url: ``sqlite:///path.db`` (``sqlite://`` for ``conveyor.db`` in the working
                directory), ``memory://``, ``redis://``, ``rediss://``, ``unix://``,
                ``redis+cluster://`` (a Redis Cluster), ``redis+sentinel://`` (a master
                found by Sentinel), ``postgresql://`` / ``postgres://`` (``+psycopg`` /
                ``+asyncpg`` accepted), ``http://`` / ``https://`` (an
                :class:`~conveyor.queue.http.HttpQueue` through the application's
                :class:`~conveyor.queue.http.HttpProxy`).
            runs_url: Keep run records and their logs in this other store (any URL above),
                for example ``postgresql://...?schema=runs`` under a queue on Redis (see
                :class:`conveyor.backends.split.SplitBackend`).
            **kwargs: ``name``, ``dump``, ``load``, ``defaults``, ``swept_error_message``
                and ``instrumentation`` go to the queue; the rest to the backend of ``url``
                (the run store takes its options from ``runs_url``).

        Returns:
            A :class:`~conveyor.queue.redis.RedisQueue` for a Redis URL, a
            :class:`~conveyor.queue.postgres.PostgresQueue` for a PostgreSQL URL, an
            :class:`~conveyor.queue.http.HttpQueue` for an HTTP one (as SAQ's
            ``Queue.from_url``), else a :class:`Queue`; called on a subclass, an instance
            of that subclass.

        Raises:
            UnsupportedURLError: For an unknown scheme, listing the supported ones.
            InvalidUrlError: When called on an engine's class (``RedisQueue``,
                ``PostgresQueue``) with another engine's URL.
            MissingDependencyError: When the backend's extra is not installed.
            ConfigurationError: When the backend of ``runs_url`` cannot keep another
                store's runs (Redis).
        """
        scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
        if cls.url_schemes and scheme not in cls.url_schemes:
            raise InvalidUrlError(
                f"{cls.__name__}.from_url needs a URL of scheme "
                f"{', '.join(s + '://' for s in sorted(cls.url_schemes))}, not {url!r}; "
                "Queue.from_url takes any"
            )
        queue_kwargs = {k: v for k, v in kwargs.items() if k in _QUEUE_OPTIONS}
        backend_kwargs = {k: v for k, v in kwargs.items() if k not in _QUEUE_OPTIONS}
        name = queue_kwargs.get("name", "default")
        load = queue_kwargs.get("load")
        backend = backend_for_urls(url, runs_url, name, load, **backend_kwargs)
        queue_class: type[Queue] = cls
        if scheme in _QUEUE_CLASSES:
            module, class_name = _QUEUE_CLASSES[scheme]
            engine_class = getattr(importlib.import_module(module), class_name)
            if issubclass(engine_class, cls):
                queue_class = engine_class
        return queue_class(backend, **queue_kwargs)

    # Lifecycle

    async def connect(self) -> None:
        """Connect the backend (creating its storage if needed). Idempotent."""
        if not self._connected:
            await self.backend.connect()
            self._connected = True
            self.started = self.started or now_ms()

    async def disconnect(self) -> None:
        """Disconnect the backend. Idempotent."""
        if self._connected:
            self._connected = False
            await self.backend.disconnect()

    async def _ensure_connected(self) -> None:
        # Connected on first use: SAQ's Redis queue needs no explicit ``connect()``.
        if not self._connected:
            await self.connect()

    async def __aenter__(self) -> Queue:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # Serialization

    def job_id(self, job_key: str) -> str:
        """The global id of the job with ``job_key`` in this queue."""
        return f"conveyor:job:{self.name}:{job_key}"

    def serialize(self, job: Job) -> bytes | str:
        """The stored payload of ``job``.

        Raises:
            SerializationError: Naming the argument that cannot be serialized.
        """
        return dump_job(self._dump, job.stored_dict())

    def deserialize(self, payload: bytes | str | JobRow | None) -> Job | None:
        """A job from a payload or a backend row (whose columns win over the payload)."""
        if payload is None:
            return None
        row = payload if isinstance(payload, JobRow) else None
        data = self._load(row.payload if row else payload)  # type: ignore[arg-type]
        job = Job.from_dict(data, queue=self)
        if row is not None:
            job.status = Status(row.status)
            job.attempts = row.attempts
            if row.started_ms:
                # A worker reads its clock just before it claims: a job enqueued in
                # between did not start before it was queued.
                job.started = max(row.started_ms, job.queued)
            if row.touched_ms:
                job.touched = row.touched_ms
            if row.worker_id is not None:
                job.worker_id = row.worker_id
            if row.run_id is not None:
                job.meta = {**job.meta, "run_id": row.run_id}
            job.lease_token = row.token
        return job

    def dump(self, value: Any, function: str = "", what: str = "value") -> bytes | str:
        """Serialize any value with the queue's serializer.

        Raises:
            SerializationError: Naming ``what`` failed to serialize.
        """
        return dump_value(self._dump, function, what, value)

    @property
    def uses_default_serializer(self) -> bool:
        """Whether payloads are the standard JSON of :func:`default_dump`."""
        return self._dump is default_dump

    def load(self, payload: bytes | str) -> Any:
        """Deserialize a value written by :meth:`dump`."""
        return self._load(payload)

    # Enqueue

    def register_before_enqueue(self, callback: BeforeEnqueue) -> None:
        """Call ``callback(job)`` before each job is stored (it may change the job)."""
        self._before_enqueues[id(callback)] = callback

    def unregister_before_enqueue(self, callback: BeforeEnqueue) -> None:
        """Stop calling a callback registered with :meth:`register_before_enqueue`."""
        self._before_enqueues.pop(id(callback), None)

    def _build(self, job_or_func: str | Job | Task[Any, Any], kwargs: dict[str, Any]) -> Job:
        if isinstance(job_or_func, Job):
            job = job_or_func
            if job.queue is not None and job.queue.name != self.name:
                raise ValueError(
                    f"job {job.key!r} belongs to queue {job.queue.name!r}, not {self.name!r}: "
                    "enqueue it on its own queue, or a copy without a queue "
                    "(Job.from_dict(job.to_dict())) on this one"
                )
            for name, value in kwargs.items():
                if name not in _JOB_FIELDS:
                    raise TypeError(f"{name!r} is not a Job field")
                setattr(job, name, value)
        elif not kwargs and isinstance(job_or_func, str):
            job = Job(job_or_func)  # the most common call: a name alone
        else:
            name = job_or_func if isinstance(job_or_func, str) else job_or_func.name
            if not isinstance(job_or_func, str):
                # A task handle's preset job options, under what this call gives.
                kwargs = {**getattr(job_or_func, "job_options", {}), **kwargs}
            job_kwargs = {k: v for k, v in kwargs.items() if k in _JOB_FIELDS}
            task_kwargs = {k: v for k, v in kwargs.items() if k not in _JOB_FIELDS}
            job = Job(function=name, kwargs=task_kwargs or None, **job_kwargs)
        job.queue = self
        if self.defaults:
            apply_defaults(job, self.defaults, getattr)
        return job

    async def _before_enqueue(self, job: Job) -> None:
        for callback in list(self._before_enqueues.values()):
            result = callback(job)
            if asyncio.iscoroutine(result):
                await result

    def _prepare(self, job: Job) -> NewJob:
        for hook in self.instrumentation:
            hook.before_enqueue(job)
        job.status = Status.QUEUED
        job.queued = now_ms()
        job.touched = 0  # as in SAQ: set by the first change after the enqueue
        job.attempts = 0
        job.started = job.completed = 0
        job.worker_id = None
        job.queue = self
        once = job.meta.get("once") if job.meta else None
        return NewJob(
            key=job.key,
            function=job.function,
            payload=self.serialize(job),
            priority=job.priority,
            due=float(job.scheduled or 0),
            group_key=job.group_key,
            once=once,
            once_ttl=float(job.meta.get("once_ttl", 0)) if once else 0.0,
        )

    async def enqueue(
        self,
        job_or_func: str | Job | Task[Any, Any],
        *,
        connection: Any = None,
        **kwargs: Any,
    ) -> Job | None:
        """Store a job so that a worker runs it.

        Args:
            job_or_func: A :class:`Job`, a task name, or a task handle.
            connection: A database connection of the caller's, inside its own transaction:
                the job exists if and only if that transaction commits (backends whose
                ``capabilities.transactional_enqueue`` is true: PostgreSQL).
            **kwargs: Keyword arguments that are :class:`Job` fields (``key``, ``timeout``,
                ``scheduled`` ...) configure the job; the rest are the task's arguments.

        Returns:
            The job, or None when an incomplete job with the same key already exists.

        Raises:
            SerializationError: When an argument cannot be serialized; nothing is stored.
            ConfigurationError: When ``connection`` is given to a backend that cannot use it.
        """
        if not self._connected:
            await self.connect()
        job = self._build(job_or_func, kwargs)
        if self._before_enqueues:
            await self._before_enqueue(job)
        if connection is None:  # the common case, without the extra await of _insert
            [inserted] = await self.backend.enqueue([self._prepare(job)])
        else:
            [inserted] = await self._insert([self._prepare(job)], connection)
        if not inserted:
            return None
        for hook in self.instrumentation:
            hook.enqueued(job)
        return job

    async def enqueue_many(
        self, jobs: Iterable[Job], *, connection: Any = None
    ) -> list[Job | None]:
        """Store many jobs in one round trip.

        If a job fails to serialize, none is stored. (A backend with
        ``capabilities.lazy_enqueue`` serializes the jobs while it sends them, inside one
        transaction; the others get every job serialized first.)

        Args:
            jobs: The jobs.
            connection: As for :meth:`enqueue`: the caller's transaction.

        Returns:
            Each job, or None where an incomplete job with its key already existed.
        """
        await self._ensure_connected()
        built = [self._build(job, {}) for job in jobs]
        if self._before_enqueues:
            for each in built:
                await self._before_enqueue(each)
        items: Iterable[NewJob]
        if self.backend.capabilities.lazy_enqueue:
            # Serialized as the backend sends them (a failure still stores nothing).
            items = (self._prepare(each) for each in built)
        else:
            items = [self._prepare(each) for each in built]
        inserted = await self._insert(items, connection) if built else []
        out = [job if ok else None for job, ok in zip(built, inserted, strict=True)]
        for hook in self.instrumentation:
            for job in out:
                if job is not None:
                    hook.enqueued(job)
        return out

    async def _insert(self, items: Iterable[NewJob], connection: Any) -> list[bool]:
        # ``items`` is a list unless the backend reads any iterable (lazy_enqueue).
        enqueue: Any = self.backend.enqueue
        if connection is None:
            inserted: list[bool] = await enqueue(items)
            return inserted
        if not self.backend.capabilities.transactional_enqueue:
            raise ConfigurationError(
                f"the {self.backend.name} backend cannot enqueue inside a caller's "
                "transaction (connection=...); PostgreSQL can"
            )
        result: list[bool] = await enqueue(items, connection=connection)
        return result

    async def apply(
        self,
        job_or_func: str | Job | Task[Any, Any],
        timeout: float | None = None,
        poll_interval: float = 0.5,
        **kwargs: Any,
    ) -> Any:
        """Enqueue a job and wait for its result.

        Args:
            job_or_func: As for :meth:`enqueue`.
            timeout: Seconds to wait; None or 0 waits forever.
            poll_interval: Ignored (SAQ's): the backend tells when the job changes.
            **kwargs: As for :meth:`enqueue`.

        Returns:
            The job's result; None when the job no longer exists once finished (a ``ttl``
            of -1 deletes it at once), as in SAQ.

        Raises:
            JobError: When the job failed or was aborted.
            TimeoutError: When it did not finish in time.
        """
        if isinstance(job_or_func, Job):
            # A whole job: enqueue it as it is (its key, arguments and options) and wait.
            job = await self.enqueue(job_or_func, **kwargs)
            key = job.key if job is not None else job_or_func.key
            finished = await self._wait([key], timeout, missing_ok=True)
            return _results(finished, return_exceptions=False)[0]
        results = await self.map(job_or_func, [kwargs], timeout=timeout)
        return results[0]

    async def map(
        self,
        job_or_func: str | Job | Task[Any, Any],
        iter_kwargs: Sequence[dict[str, Any]],
        timeout: float | None = None,
        return_exceptions: bool = False,
        poll_interval: float = 0.5,
        **kwargs: Any,
    ) -> list[Any]:
        """Enqueue one job per kwargs dict, wait for them all and return their results.

        Args:
            job_or_func: A task name or handle (a :class:`Job` is used as a template).
            iter_kwargs: One dict of arguments per job.
            timeout: Seconds to wait for all; None or 0 waits forever.
            return_exceptions: Put a :class:`JobError` in the list instead of raising.
            poll_interval: Ignored (SAQ's): the backend tells when the jobs change.
            **kwargs: Arguments shared by every job.

        Returns:
            The results, in the order of ``iter_kwargs``; None for a job that no longer
            exists once finished (``ttl`` -1), as in SAQ.

        Raises:
            JobError: For the first job that failed or was aborted, unless
                ``return_exceptions``.
            TimeoutError: When they did not all finish in time.
        """
        template = job_or_func
        if isinstance(template, Job):
            # The template's options and arguments, under what this call gives.
            options = {k: getattr(template, k) for k in (*POLICY_FIELDS, "priority", "group_key")}
            kwargs = {**options, **(template.kwargs or {}), **kwargs}
            template = template.function
        jobs = [self._build(template, {**kwargs, **one}) for one in iter_kwargs]
        # An existing job with the same key is awaited just the same.
        await self.enqueue_many(jobs)
        finished = await self._wait([job.key for job in jobs], timeout, missing_ok=True)
        return _results(finished, return_exceptions)

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Abort every job enqueued inside the block if the block raises."""
        jobs: list[Job] = []

        def remember(job: Job) -> None:
            jobs.append(job)

        self.register_before_enqueue(remember)
        try:
            yield
        except BaseException:
            for job in jobs:
                await self.abort(job, "aborted: the batch it was enqueued in failed")
            raise
        finally:
            self.unregister_before_enqueue(remember)

    # Reading

    async def job(self, job_key: str) -> Job | None:
        """The job with ``job_key``, or None."""
        await self._ensure_connected()
        [row] = await self.backend.get([job_key])
        return self.deserialize(row)

    async def jobs(self, job_keys: Iterable[str]) -> list[Job | None]:
        """Jobs by key, in order; None where a key does not exist."""
        await self._ensure_connected()
        return [self.deserialize(row) for row in await self.backend.get(list(job_keys))]

    async def iter_jobs(
        self, statuses: Iterable[Status] | None = None, batch_size: int = 100
    ) -> AsyncIterator[Job]:
        """Every job with one of ``statuses`` (all by default), newest first, page by page.

        Pages are read by offset: a job stored or deleted while the iteration runs may shift
        the pages, so that a job is yielded twice or skipped.
        """
        await self._ensure_connected()
        wanted = [Status(s).value for s in statuses] if statuses is not None else None
        offset = 0
        while True:
            rows = await self.backend.list_jobs(wanted, offset, batch_size)
            for row in rows:
                job = self.deserialize(row)
                if job is not None:
                    yield job
            if len(rows) < batch_size:
                return
            offset += batch_size

    async def count(self, kind: str) -> int:
        """How many jobs are ``queued``, ``active``, ``scheduled`` or ``incomplete``.

        SAQ's meanings: ``queued`` is the jobs due now, waiting for a worker (a job
        scheduled for later is ``scheduled``); ``active`` the jobs running; ``incomplete``
        all three. A job being aborted (``aborting``, its worker not yet stopped) counts in
        none of them, from the moment :meth:`abort` returns. ``queued``, ``active`` and
        ``scheduled`` agree with :meth:`info`.

        Raises:
            ValueError: For an unknown kind, listing the known ones.
        """
        if kind not in _COUNT_KINDS:
            raise ValueError(f"unknown count kind {kind!r}; use one of {', '.join(_COUNT_KINDS)}")
        return (await self._counts())[kind]

    async def _counts(self) -> dict[str, int]:
        await self._ensure_connected()
        raw = await self.backend.count(["queued", "active", "scheduled"])
        return {
            "queued": raw["queued"] - raw["scheduled"],
            "active": raw["active"],
            "scheduled": raw["scheduled"],
            "incomplete": raw["queued"] + raw["active"],
        }

    async def info(self, jobs: bool = False, offset: int = 0, limit: int = 10) -> dict[str, Any]:
        """The queue's state: workers, counts and (with ``jobs``) a page of incomplete jobs.

        ``queued``, ``active`` and ``scheduled`` are :meth:`count`'s; each job is its
        :meth:`Job.to_dict`, as in SAQ.
        """
        counts = await self._counts()
        workers = {wid: self.load(info) for wid, info in (await self.backend.workers()).items()}
        out: dict[str, Any] = {
            "name": self.name,
            "workers": workers,
            "queued": counts["queued"],
            "active": counts["active"],
            "scheduled": counts["scheduled"],
            "jobs": [],
        }
        if jobs:
            rows = await self.backend.list_jobs(["queued", "active", "aborting"], offset, limit)
            out["jobs"] = [j.to_dict() for r in rows if (j := self.deserialize(r))]
        return out

    # Waiting: read the jobs, then wait for the backend's notification that one of them
    # changed, in slices of at most _MAX_WAIT_SLICE seconds.

    async def wait(self, keys: Sequence[str], timeout: float | None = None) -> list[Job]:
        """Wait until every job in ``keys`` is finished and return them, in order.

        Args:
            keys: The jobs' keys.
            timeout: Seconds to wait; None or 0 waits forever.

        Raises:
            TimeoutError: When they did not all finish in time.
            JobNotFoundError: When a job does not exist (expired or never stored).
        """
        finished = await self._wait(keys, timeout, missing_ok=False)
        return [job for job in finished if job is not None]

    async def _wait(
        self, keys: Sequence[str], timeout: float | None, missing_ok: bool
    ) -> list[Job | None]:
        """:meth:`wait`; with ``missing_ok`` a job that does not exist is None, not an error."""
        await self._ensure_connected()
        deadline = time.monotonic() + timeout if timeout else None
        pending = list(dict.fromkeys(keys))
        done: dict[str, Job | None] = {}
        while True:
            rows = await self.backend.get(pending)
            for key, row in zip(pending, rows, strict=True):
                if row is None:
                    if not missing_ok:
                        raise JobNotFoundError(key, self.name)
                    done[key] = None
                elif Status(row.status) in TERMINAL_STATUSES:
                    done[key] = self.deserialize(row)
            pending = [k for k in pending if k not in done]
            if not pending:
                return [done[k] for k in keys]
            remaining = _MAX_WAIT_SLICE
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"jobs {pending[:5]} did not finish within {timeout}s")
                remaining = min(remaining, left)
            await self.backend.wait_for_finish(pending, remaining)

    async def refresh(
        self, job: Job, until_complete: float | None = None, poll_interval: float = 0.5
    ) -> Job:
        """The stored state of ``job``; with ``until_complete``, once it has finished.

        Args:
            job: The job to reload.
            until_complete: Seconds to wait for it to finish; 0 waits forever; None does not
                wait.
            poll_interval: Ignored (SAQ's): the backend tells when the job changes.

        Raises:
            JobNotFoundError: When the job no longer exists.
            TimeoutError: When it did not finish in time.
        """
        if until_complete is None:
            found = await self.job(job.key)
            if found is None:
                raise JobNotFoundError(job.key, self.name)
            return found
        [finished] = await self.wait([job.key], until_complete or None)
        return finished

    async def listen(
        self,
        job_keys: Sequence[str],
        callback: ListenCallback,
        timeout: float | None = 10,
        poll_interval: float = 0.5,
    ) -> None:
        """Call ``callback(key, status)`` on each change of the jobs until it returns truthy.

        ``poll_interval`` is ignored (SAQ's): the backend tells when a job changes.

        The callback gets each job's status when the job is first read, and again whenever
        it reads changed (its status or its stored fields). The jobs are read again on each
        notification: changes between two reads are seen once, as the latest. A job that
        does not exist is passed over until it does. Also returns when every job has
        finished, or after ``timeout`` seconds (None or 0: no limit).
        """
        await self._ensure_connected()
        deadline = time.monotonic() + timeout if timeout else None
        seen: dict[str, tuple[str, bytes | str]] = {}
        while True:
            rows = await self.backend.get(list(job_keys))
            finished = 0
            for key, row in zip(job_keys, rows, strict=True):
                if row is None:
                    continue
                state = (row.status, row.payload)
                if seen.get(key) != state:
                    seen[key] = state
                    result = callback(key, Status(row.status))
                    if asyncio.iscoroutine(result):
                        result = await result
                    if result:
                        return
                finished += Status(row.status) in TERMINAL_STATUSES
            if finished == len(job_keys):
                return
            left = _MAX_WAIT_SLICE
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    return
            await self.backend.wait_for_finish(list(job_keys), left)

    # Changing jobs

    async def update(self, job: Job, **kwargs: Any) -> None:
        """Set fields on ``job`` and store it.

        Without ``status`` (or with the status the job has), the job's fields are stored and
        its status stays. A new ``status`` is stored as SAQ stores it, through the step of
        the state machine that makes that change (:mod:`conveyor.lifecycle`), with the
        fields set here: ``complete``, ``failed`` or ``aborted`` as :meth:`finish` (with the
        job's ``result`` and ``error``), ``queued`` as :meth:`retry`, ``aborting`` as
        :meth:`abort`. ``active`` and ``new`` are refused: only a worker's claim starts an
        attempt, and only :meth:`enqueue` stores a job.

        Every write is fenced as the step's own: a job claimed here is written only while
        this process still holds its lease (and a status change ends the attempt: its lease
        token is spent). A job not claimed here gets no new status but ``aborting`` while a
        worker holds it (stored ``active`` or ``aborting``): only that worker, under its
        lease, writes how the attempt ends. (The check reads the job first: a job claimed
        between that read and the write is written unfenced, as :meth:`finish` writes a job
        not claimed here.)

        Raises:
            ValueError: ``status`` is ``active`` or ``new``, or another status than
                ``aborting`` for a job a worker holds that was not claimed here; nothing is
                stored.
            JobNotFoundError: The job does not exist (for a status change).
            SerializationError: A field cannot be serialized; nothing is stored.
            LeaseLostError: ``job`` was claimed here and its lease is gone (another worker
                recovered it): nothing is stored, and the attempt should stop.
        """
        status = Status(kwargs.pop("status")) if "status" in kwargs else job.status
        if status != job.status and status in (Status.ACTIVE, Status.NEW):
            raise ValueError(
                f"update cannot make job {job.key!r} {status.value}: only a worker's claim "
                "makes a job active and only enqueue stores a new one"
            )
        await self._ensure_connected()
        if status != job.status and status != Status.ABORTING and job.lease_token is None:
            [row] = await self.backend.get([job.key])
            if row is None:
                raise JobNotFoundError(job.key, self.name)
            if row.status in (Status.ACTIVE.value, Status.ABORTING.value):
                raise ValueError(
                    f"job {job.key!r} is {row.status} on worker {row.worker_id!r}: only that "
                    f"worker, under its lease, may make it {status.value}; abort it instead "
                    "(status=aborting)"
                )
        for name, value in kwargs.items():
            setattr(job, name, value)
        if status != job.status:
            if status in TERMINAL_STATUSES:
                await self.finish(job, status, result=job.result, error=job.error)
            elif status == Status.QUEUED:
                await self.retry(job, job.error)
            else:
                await self.abort(job, job.error or "aborted")
            return
        job.touched = now_ms()
        token = job.lease_token
        stored = await self.backend.update(job.key, self.serialize(job), token)
        if not stored and token is not None:
            raise LeaseLostError(job.key, self.name, "update")

    async def abort(self, job: Job | str, error: str = "aborted", ttl: float = 5) -> None:
        """Abort a job: a queued job never starts; a running job is cancelled by its worker.

        A job that has finished already is left as it is. The change is not fenced (see
        :mod:`conveyor.lifecycle`): it is not about an attempt this process holds.

        Args:
            job: The job or its key.
            error: The reason, recorded on the job.
            ttl: Unused; kept for SAQ compatibility (aborted jobs follow the job's ``ttl``).

        Raises:
            JobNotFoundError: When the job does not exist.
        """
        await self._ensure_connected()
        key = job if isinstance(job, str) else job.key
        stored = await self.job(key)
        if stored is None:
            raise JobNotFoundError(key, self.name)
        stored.error = error
        stored.status = Status.ABORTED
        stored.completed = stored.touched = now_ms()
        before = await self.backend.abort(key, self.serialize(stored), time.time())
        if before == Status.QUEUED.value:
            # Never started: it ends here, its row expiring like any finished job.
            await self.backend.finish([self.transition(stored, Status.ABORTED, error=error)])
        if isinstance(job, Job) and before in (Status.QUEUED.value, Status.ACTIVE.value):
            job.status = Status.ABORTED if before == Status.QUEUED.value else Status.ABORTING
            job.error = error

    async def finish(
        self, job: Job, status: Status, *, result: Any = None, error: str | None = None
    ) -> None:
        """Finish ``job`` with ``status`` (complete, failed or aborted) and store it.

        A job claimed here is written only while this process still holds its lease; any
        other job is written unfenced, whatever its state (see :mod:`conveyor.lifecycle`).

        Raises:
            LeaseLostError: ``job`` was claimed here and its lease is gone; nothing is stored.
        """
        await self._ensure_connected()
        await self._write(job, self.transition(job, status, result=result, error=error))
        self.count_ended(status)

    async def retry(self, job: Job, error: str | None = None) -> None:
        """Queue ``job`` for another attempt, after its retry delay (fenced as :meth:`finish` is).

        Raises:
            LeaseLostError: ``job`` was claimed here and its lease is gone; nothing is stored.
        """
        await self._ensure_connected()
        await self._write(job, self.transition(job, Status.QUEUED, error=error))
        self.count_ended(Status.QUEUED)

    #: SAQ's counters of the attempts that ended through this queue object (its
    #: ``finish`` and ``retry``, and the workers that run on it): ``queued`` again counts
    #: as retried. Plain ints, per object (an increment makes the instance's own).
    complete: int = 0
    failed: int = 0
    retried: int = 0
    aborted: int = 0
    #: Epoch ms of this object's first :meth:`connect` (SAQ's ``Queue.started``).
    started: int = 0

    def count_ended(self, status: Status) -> None:
        """Count an attempt that ended with ``status`` (``queued``: retried) in SAQ's
        counters :attr:`complete`, :attr:`failed`, :attr:`aborted` and :attr:`retried`."""
        if status == Status.COMPLETE:
            self.complete += 1
        elif status == Status.FAILED:
            self.failed += 1
        elif status == Status.ABORTED:
            self.aborted += 1
        elif status == Status.QUEUED:
            self.retried += 1

    async def _write(self, job: Job, transition: Transition) -> None:
        [applied] = await self.backend.finish([transition])
        job.lease_token = None  # the attempt has ended, whether this write landed or not
        if not applied and transition.token is not None:
            raise LeaseLostError(job.key, self.name, "finish")

    def transition(
        self,
        job: Job,
        status: Status,
        *,
        result: Any = None,
        error: str | None = None,
        traceback: str | None = None,
        delay: float | None = None,
    ) -> Transition:
        """Decide a job's next state (see :func:`conveyor.lifecycle.transition`).

        Sets the job's fields in place and returns what to hand to :meth:`Backend.finish`.
        """
        return lifecycle.transition(
            job,
            status,
            serialize=self.serialize,
            dump=self.dump,
            result=result,
            error=error,
            traceback=traceback,
            delay=delay,
        )

    # Worker-facing operations (SAQ keeps these on the queue too)

    async def dequeue(
        self,
        timeout: float = 0,
        poll_interval: float = 0.0,
        worker_id: str = "dequeue",
        lease_s: float = 60,
    ) -> Job | None:
        """Claim one job, waiting up to ``timeout`` seconds for one (0, the default: until
        there is one, as SAQ's ``dequeue`` does).

        ``poll_interval`` is ignored (SAQ's): the backend wakes the wait.

        The job carries its lease's token: the writes about it are fenced (see
        :mod:`conveyor.lifecycle`). Nothing renews the lease here; a job not finished within
        ``lease_s`` seconds may be recovered by a sweep.

        Returns:
            The job, or None when none was claimable in time.
        """
        await self._ensure_connected()
        deadline = time.monotonic() + timeout if timeout > 0 else None
        while True:
            rows = await self.backend.claim(worker_id, 1, lease_s, time.time())
            if rows:
                return self.deserialize(rows[0])
            left = _MAX_WAIT_SLICE
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    return None
            await self.backend.wait_for_work(left)

    async def schedule(self, lock: int = 1) -> list[str]:
        """Kept for SAQ compatibility: scheduled jobs become claimable by themselves."""
        return []

    async def sweep(
        self, lock: int = 60, abort: float = 5.0, worker_id: str = "sweeper"
    ) -> list[str]:
        """Recover jobs whose worker died and delete expired finished jobs.

        A recovered job is queued again when it has attempts left, else it fails with
        :attr:`swept_error_message`; one that was being aborted ends aborted (see
        :meth:`recovery_transition`). One call recovers up to 100 jobs and deletes up to
        1,000 expired ones.

        Args:
            lock: Seconds the sweeper's lease on a recovered job lasts (at least 5) until
                its new state is written.
            abort: Unused; kept for SAQ compatibility.
            worker_id: The sweeper's id, holding the recovered jobs' leases.

        Returns:
            The keys of the recovered jobs.
        """
        await self._ensure_connected()
        now = time.time()
        rows = await self.backend.recover(worker_id, 100, max(float(lock), 5.0), now)
        transitions = []
        for row in rows:
            job = self.deserialize(row)
            if job is not None:
                transitions.append(self.recovery_transition(job))
        if transitions:
            await self.backend.finish(transitions)
        await self.backend.expire(now, 1000)
        return [t.key for t in transitions]

    def recovery_transition(self, job: Job) -> Transition:
        """What happens to a job whose worker died: retry if it may, else fail.

        See :func:`conveyor.lifecycle.recovery_transition`.
        """
        return lifecycle.recovery_transition(
            job, error=self.swept_error_message, serialize=self.serialize, dump=self.dump
        )

    @staticmethod
    def format_traceback(exc: BaseException) -> str:
        """A traceback string for storage."""
        return "".join(tb_module.format_exception(exc))


def _results(jobs: Iterable[Job | None], return_exceptions: bool) -> list[Any]:
    """The results of finished jobs, in order (None for a job that no longer exists).

    A job that failed or was aborted gives a :class:`JobError`: the first is raised, unless
    ``return_exceptions`` puts each in the list.
    """
    results: list[Any] = []
    for job in jobs:
        if job is None:  # deleted once finished (ttl -1): SAQ gives None
            results.append(None)
            continue
        if job.status == Status.COMPLETE:
            results.append(job.result)
            continue
        error = JobError(job)
        if not return_exceptions:
            raise error
        results.append(error)
    return results


__all__ = ["TERMINAL_STATUSES", "UNSUCCESSFUL_TERMINAL_STATUSES", "JobError", "Queue"]
