"""The Backend protocol: the atomic storage operations every engine provides.

Policy (statuses, retries, backoff, defaults, hooks) lives in :mod:`conveyor.queue` and
:mod:`conveyor.worker`. A backend only stores and moves records, atomically, and in batches:
every operation that a worker performs once per job (enqueue, claim, finish, lease renewal,
run records, logs) takes a list, so that N jobs cost one round trip, not N.

A backend is bound to one queue name. Its records:

* **Job rows** (:class:`JobRow`): the job serialized by the core as an opaque ``payload``
  (bytes or str, written by the queue's ``dump``), plus the indexed columns the backend needs
  to order, claim and list jobs. A few columns are changed by the backend itself at claim and
  lease time (``status``, ``attempts``, ``started``, ``touched``, ``worker_id``); they win over
  the same fields inside the payload when the core loads a row.
* **Run records** (:class:`RunRecord`): one per attempt, created by :meth:`Backend.claim` in
  the same atomic step that makes the job active, completed by :meth:`Backend.finish`.
* **Leases and fencing tokens**: a job has one owner at a time. :meth:`Backend.claim` and
  :meth:`Backend.recover` give the job a new *fencing token* (:attr:`JobRow.token`), unique
  within the backend and never reused, not even when a finished job's key is enqueued again.
  Every write about that attempt carries the token (:attr:`Transition.token`,
  :meth:`Backend.update`'s ``token``, :class:`Lease`), and the backend refuses it, in the same
  atomic step that would write, unless the job is still ``active`` or ``aborting`` under that
  very token. A worker whose lease was taken over learns it from :meth:`Backend.renew`
  (:attr:`Renewal.lost`) or from a refused write, never by overwriting the new owner's work.
  An expired lease whose token is unchanged (nobody recovered the job) is still the owner's:
  renewing it or finishing under it succeeds.
* **Log lines** (:class:`LogLine`), appended in batches to a run.
* **Worker records**: a small dict per live worker, expiring when not refreshed.
* **Marks**: set-once tokens with an expiry (:meth:`Backend.enqueue` uses them so that a
  cron slot is enqueued once by any number of workers).

Times are epoch seconds as floats unless a name ends in ``_ms``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

Payload = bytes | str


@dataclasses.dataclass(slots=True)
class Capabilities:
    """What a backend can do; the conformance suite reads these instead of skipping by hand.

    Attributes:
        cross_process: Several processes (workers, producers) can share the queue.
        durable: Jobs survive a restart of every process.
        transactional_enqueue: ``enqueue`` can join a caller's database transaction.
        run_store: :meth:`Backend.record_runs` works: the backend can keep the runs of a
            queue stored elsewhere (``Queue.from_url(url, runs_url=...)``).
        lazy_enqueue: ``enqueue`` accepts any iterable, reads it while it sends (so the
            caller's serialization overlaps the writes), and stores nothing if reading it
            raises; the others get a list.
    """

    cross_process: bool = True
    durable: bool = True
    transactional_enqueue: bool = False
    run_store: bool = True
    lazy_enqueue: bool = False


@dataclasses.dataclass(slots=True)
class NewJob:
    """A job to insert.

    Attributes:
        key: The job's key; unique among the queue's incomplete jobs.
        function: The task name (stored as a column for filtering).
        payload: The serialized job.
        priority: Lower runs first.
        due: Epoch seconds when the job becomes claimable (0 or past: now).
        group_key: Jobs sharing a group never run at the same time.
        once: A mark token; when set, the job is inserted only if the mark does not exist,
            and the mark is created in the same atomic step.
        once_ttl: Seconds the mark lives.
    """

    key: str
    function: str
    payload: Payload
    priority: int = 0
    due: float = 0.0
    group_key: str | None = None
    once: str | None = None
    once_ttl: float = 0.0


@dataclasses.dataclass(slots=True)
class JobRow:
    """A stored job as the backend returns it.

    The core loads ``payload`` and then overrides its fields with the columns below.

    Attributes:
        key: The job's key.
        payload: The serialized job, as last written by the core.
        status: The current status (a :class:`conveyor.job.Status` value).
        attempts: Attempts started so far.
        started_ms: Start of the current attempt, epoch ms (0: never started).
        touched_ms: Latest change or lease renewal, epoch ms.
        worker_id: The worker that holds the job's lease.
        run_id: The run record of the current attempt (set by :meth:`Backend.claim`).
        token: The fencing token of the lease just taken, set only in the rows that
            :meth:`Backend.claim` and :meth:`Backend.recover` return (None elsewhere).
    """

    key: str
    payload: Payload
    status: str
    attempts: int = 0
    started_ms: int = 0
    touched_ms: int = 0
    worker_id: str | None = None
    run_id: str | None = None
    token: str | None = None


@dataclasses.dataclass(slots=True)
class Transition:
    """A job's next state, written by :meth:`Backend.finish` with its run's outcome.

    Attributes:
        key: The job's key.
        payload: The serialized job in its new state.
        status: ``queued`` (a retry or a re-queue), ``complete``, ``failed`` or ``aborted``.
        due: For ``queued``: epoch seconds when the job becomes claimable again.
        expire_at: For terminal statuses: epoch seconds when the row may be deleted;
            None keeps it forever.
        delete: Delete the row now (a ``ttl`` of -1) instead of keeping it.
        run: The outcome of the run this transition ends, if one was running.
        token: The fencing token of the lease this write belongs to. When set, the
            transition (its run's end included) is applied only if the job is ``active``
            or ``aborting`` under this token, and refused otherwise; None applies it to
            whatever is stored (a change no worker holds a lease for, such as ending a
            queued job that was aborted).
    """

    key: str
    payload: Payload
    status: str
    due: float = 0.0
    expire_at: float | None = None
    delete: bool = False
    run: RunEnd | None = None
    token: str | None = None


@dataclasses.dataclass(slots=True)
class Lease:
    """A lease a worker holds: a job's key and the fencing token its claim returned.

    Attributes:
        key: The job's key.
        token: :attr:`JobRow.token` from :meth:`Backend.claim` or :meth:`Backend.recover`.
    """

    key: str
    token: str


@dataclasses.dataclass(slots=True)
class Renewal:
    """What :meth:`Backend.renew` found.

    Attributes:
        aborting: Keys still held (and renewed) whose status is ``aborting``: the worker
            cancels them and finishes them as aborted.
        lost: Keys no longer held under the given token (recovered by another worker,
            finished, deleted or replaced): not renewed; the worker cancels them at once
            and writes nothing more about them.
    """

    aborting: list[str] = dataclasses.field(default_factory=list)
    lost: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class RunEnd:
    """The outcome of one attempt.

    Attributes:
        run_id: The run record, as :meth:`Backend.claim` created it.
        status: ``complete``, ``failed``, ``aborted`` or ``retried``.
        finished_ms: Epoch ms when the attempt ended.
        detail: Serialized extra fields (arguments, result, error, traceback, trigger ...)
            decided by the core; the backend stores it opaquely.
        error: The error message, stored as its own column so it can be searched.
    """

    run_id: str
    status: str
    finished_ms: int
    detail: Payload = b""
    error: str | None = None


@dataclasses.dataclass(slots=True)
class RunRecord:
    """One attempt of one job.

    Attributes:
        run_id: Unique within the backend; generated by :meth:`Backend.claim`, or given to
            :meth:`Backend.record_runs` by another backend. An opaque string.
        key: The job's key.
        function: The task name.
        attempt: 1 for the first attempt.
        worker_id: The worker that ran it.
        status: ``running``, ``complete``, ``failed``, ``aborted`` or ``retried``.
        started_ms: Epoch ms.
        finished_ms: Epoch ms, 0 while running.
        error: The error message, if any.
        detail: What the core stored at the end (see :class:`RunEnd`).
    """

    run_id: str
    key: str
    function: str
    attempt: int
    worker_id: str | None
    status: str
    started_ms: int
    finished_ms: int = 0
    error: str | None = None
    detail: Payload = b""


@dataclasses.dataclass(slots=True)
class LogLine:
    """One captured log record of a run.

    Attributes:
        run_id: The run it belongs to.
        seq: Orders the run's lines; unique within the run.
        ts: Epoch seconds.
        level: The level name (``INFO`` ...).
        message: The formatted message.
        extra: Serialized logger name, file, line, function and extra fields.
    """

    run_id: str
    seq: int
    ts: float
    level: str
    message: str
    extra: Payload = b""


#: A log line as a plain row: :class:`LogLine`'s fields in order (run_id, seq, ts, level,
#: message, extra). The worker's log capture makes rows, cheaper than objects per line.
LogRow = tuple[str, int, float, str, str, Payload]


@dataclasses.dataclass(slots=True)
class RunFilter:
    """Which runs :meth:`Backend.list_runs` returns.

    Attributes:
        status: Only runs with this status.
        function: Only runs of this task.
        key: Only runs of this job.
        since_ms: Only runs started at or after this time.
        until_ms: Only runs started before this time.
        error_contains: Only runs whose error contains this text (case-insensitive).
    """

    status: str | None = None
    function: str | None = None
    key: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    error_contains: str | None = None


@runtime_checkable
class FinishesWithLogs(Protocol):
    """A backend that writes log lines and transitions in one atomic step.

    Optional: the writer uses it when a backend has it, and two calls otherwise.
    """

    async def finish_with_logs(
        self, transitions: Sequence[Transition], rows: Sequence[LogRow]
    ) -> list[bool]:
        """Store ``rows`` as :meth:`~conveyor.backends.base.Backend.append_logs` stores
        lines, then apply ``transitions`` as :meth:`~conveyor.backends.base.Backend.finish`
        does (fencing included; its result is returned), in one round trip and one
        transaction: both are stored, or neither.

        Args:
            transitions: As for ``finish``; never empty.
            rows: Each line's fields in :class:`~conveyor.backends.base.LogLine` order
                (run_id, seq, ts, level, message, extra); never empty.
        """
        ...


@runtime_checkable
class DetectsDeadOwners(Protocol):
    """A backend that can tell that a lease's owner is gone before its lease expires.

    Optional. Each engine knows it its own way: a PostgreSQL session that ended, a process
    on this host that no longer exists, a Redis client connection that closed. The worker's
    sweep calls it before :meth:`Backend.recover`, so that a killed worker's jobs come back
    within a sweep instead of a lease.
    """

    async def expire_dead_leases(self, now: float) -> int:
        """End at once the leases of ``active`` or ``aborting`` jobs whose owner is known to
        be gone, so that the next :meth:`~Backend.recover` takes them over (with a new
        fencing token). A lease whose owner may still be alive is never touched, nor one
        taken with ``vouch=False`` (nobody vouched for its owner: it ends by expiry only).

        Returns:
            How many leases were ended.
        """
        ...


@runtime_checkable
class Backend(Protocol):
    """Atomic storage operations for one queue.

    Every method may raise :class:`conveyor.errors.BackendError` when the engine fails;
    the caller decides whether to retry. Methods that take a sequence handle all items in
    one round trip (one transaction, pipeline or script call), each item atomically.
    """

    name: str
    capabilities: Capabilities

    async def connect(self) -> None:
        """Open connections and create or migrate storage. Idempotent."""

    async def disconnect(self) -> None:
        """Close connections. Idempotent."""

    async def enqueue(self, jobs: Sequence[NewJob]) -> list[bool]:
        """Insert jobs with status ``queued``.

        Atomicity: per job. A job is not inserted (False) when an incomplete job (queued,
        active or aborting) with the same key exists, or when its ``once`` mark exists. A
        finished job with the same key is replaced. Inserted jobs wake waiting workers.

        ``jobs`` is a list, or any iterable for a backend with ``capabilities.lazy_enqueue``.

        A backend with ``capabilities.transactional_enqueue`` also accepts a keyword
        ``connection``: the caller's connection, inside its own transaction; the jobs then
        exist if and only if the caller commits.

        Payloads come back from :meth:`get` equal in value: a backend that stores JSON
        natively (PostgreSQL's JSONB) may normalise key order and spacing.

        Returns:
            One bool per job, in order: whether it was inserted.
        """
        ...

    async def claim(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Take up to ``limit`` claimable jobs and make them active.

        Claimable: status ``queued``, ``due <= now``, and no job of the same ``group_key``
        active or aborting (at most one per group is taken). Order: ``priority`` ascending,
        then ``due``, then insertion order.

        Atomicity: each job is claimed by exactly one caller. In the same step the job's
        ``status`` becomes ``active``, ``attempts`` increments, ``started_ms`` and
        ``touched_ms`` become now, ``worker_id`` is set, its lease expires at
        ``now + lease_s``, it gets a new fencing token (returned in :attr:`JobRow.token`;
        the run id may serve), and a run record (status ``running``) is created, its id
        returned in :attr:`JobRow.run_id`.

        ``vouch``: whether this process vouches for ``worker_id`` being alive (it runs the
        worker). False: this process does not vouch for the owner; the lease ends only by
        expiry, never early by :meth:`DetectsDeadOwners.expire_dead_leases` (the HTTP
        proxy claims, recovers and renews so for its remote workers, whose leases must
        outlive a restart of the proxy). :meth:`recover` takes it alike; a :meth:`renew`
        with False vouches for nothing anew. Fencing is the same either way.
        """
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a job may have become claimable, or after ``timeout`` seconds.

        A wake-up may be spurious; the caller claims afterwards. A backend with scheduled
        jobs returns no later than the earliest ``due`` time still in the future. A wake-up
        that arrives between the caller's last :meth:`claim` and this call must not be lost
        (return at once). Enqueues, re-queues, and finishes (a finished job may free its
        ``group_key``) all wake waiters.
        """
        ...

    async def renew(
        self,
        worker_id: str,
        leases: Sequence[Lease],
        lease_s: float,
        now: float,
        *,
        vouch: bool = True,
    ) -> Renewal:
        """Extend each lease that is still held to ``now + lease_s``.

        A lease is held while the job is ``active`` or ``aborting`` under the lease's token,
        even if it expired meanwhile (nobody recovered the job). A held lease is extended,
        ``touched_ms`` set to now and ``worker_id`` kept; any other is left alone and
        reported lost. One atomic step per lease. ``vouch``: as for :meth:`claim` (False
        leaves the lease to end only by expiry).

        Returns:
            The held leases whose job is ``aborting``, and the leases that are lost.
        """
        ...

    async def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        """Write each job's next state and end its run, one atomic step per job.

        A transition with a :attr:`~Transition.token` is refused (nothing of it is stored,
        not its run's end either) unless the job is ``active`` or ``aborting`` under that
        token; see the module's notes on fencing. A terminal status releases the lease,
        takes the job out of the incomplete set, expires or deletes the row as asked, and
        notifies :meth:`wait_for_finish` waiters. ``queued`` makes the job claimable again
        at ``due``.

        Returns:
            One bool per transition, in order: whether it was applied. A transition without
            a token whose job no longer exists is not applied (its run's end is stored).
        """
        ...

    async def update(self, key: str, payload: Payload, token: str | None = None) -> bool:
        """Store a new payload for an existing job (progress, meta) without changing status.

        With ``token``, the payload is stored only while the job is ``active`` or
        ``aborting`` under that fencing token, atomically. Notifies
        :meth:`wait_for_finish` waiters so that progress is visible at once.

        Returns:
            Whether it was stored: False when the job does not exist or ``token`` is not
            the current owner's.
        """
        ...

    async def abort(self, key: str, payload: Payload, now: float) -> str | None:
        """Abort a job.

        Atomicity: one step. A ``queued`` job becomes ``aborted`` (terminal; it will never
        be claimed). An ``active`` job becomes ``aborting``: its worker sees it at its next
        :meth:`renew` and finishes it as ``aborted``. Other statuses are left alone. The
        payload (carrying the error) is stored in both changing cases.

        Returns:
            The status the job had before, or None when it does not exist.
        """
        ...

    async def recover(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Take over jobs whose lease expired (their worker died).

        Atomicity: like :meth:`claim` (exactly one caller takes each), but the status is
        kept, ``attempts`` is not incremented and no run is created; the lease is given to
        ``worker_id`` until ``now + lease_s`` under a new fencing token
        (:attr:`JobRow.token`), so that the dead owner's late writes are refused from now
        on and the core can finish or re-queue the job with :meth:`finish`.
        :attr:`JobRow.run_id` is the dead attempt's run. ``vouch``: as for :meth:`claim`
        (False leaves the new lease to end only by expiry).
        """
        ...

    async def get(self, keys: Sequence[str]) -> list[JobRow | None]:
        """Load jobs by key, in order; None for a key that does not exist."""
        ...

    async def list_jobs(
        self, statuses: Sequence[str] | None, offset: int, limit: int
    ) -> list[JobRow]:
        """Jobs with one of ``statuses`` (all when None), newest first, paginated."""
        ...

    async def count(self, statuses: Sequence[str]) -> dict[str, int]:
        """How many jobs have each status; ``scheduled`` counts queued jobs not yet due.

        Counts of finished statuses may include rows whose ``expire_at`` has passed until
        :meth:`expire` has run (Redis drops the row itself but not its index entry).

        Args:
            statuses: Status values, and optionally ``scheduled``.
        """
        ...

    async def wait_for_finish(self, keys: Sequence[str], timeout: float) -> None:
        """Return when any of ``keys`` may have changed (finished or updated), or on timeout.

        May wake spuriously; the caller re-reads the jobs.
        """
        ...

    async def expire(self, now: float, limit: int) -> int:
        """Delete up to ``limit`` finished jobs whose ``expire_at`` has passed.

        Returns:
            How many were deleted.
        """
        ...

    async def put_worker(self, worker_id: str, info: Payload, ttl_s: float) -> None:
        """Store a worker's record; it expires after ``ttl_s`` unless stored again."""
        ...

    async def delete_worker(self, worker_id: str) -> None:
        """Remove a worker's record (on a clean stop)."""
        ...

    async def workers(self) -> dict[str, Payload]:
        """The records of live workers, by worker id."""
        ...

    async def record_runs(self, starts: Sequence[RunRecord], ends: Sequence[RunEnd]) -> None:
        """Store run records created by another backend, with the run ids they were given.

        This is how a queue keeps its runs in a separate store (see
        :class:`conveyor.backends.split.SplitBackend`): ``starts`` are stored as given (a
        start whose id is already stored is ignored), then each of ``ends`` completes the
        run with its id, like :attr:`Transition.run` in :meth:`finish` (an unknown id is
        ignored). The ids are opaque strings; they must not look like this backend's own
        run ids (the split backend prefixes them with ``name:queue:``). One round trip.
        """
        ...

    async def list_runs(
        self, filters: RunFilter, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """Runs matching ``filters``, newest first, paginated, and the total that match."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """One run, or None."""
        ...

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        """Store captured log lines (any number of runs) in one round trip."""
        ...

    async def read_logs(self, run_id: str, after_seq: int, limit: int) -> list[LogLine]:
        """A run's lines with ``seq > after_seq``, in ``seq`` order."""
        ...

    async def purge_runs(self, before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` finished runs that started before ``before_ms``, with their logs.

        Returns:
            How many runs were deleted.
        """
        ...

    async def drop(self) -> None:
        """Delete everything this backend created: its schema, key prefix or stored rows.

        For tests and for tearing down a queue; it never touches other queues' storage.
        """
        ...

    def describe(self) -> dict[str, Any]:
        """A few facts for displays (engine, address without password)."""
        ...
