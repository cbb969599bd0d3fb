"""Inserting jobs: the statement that fits each call, and how its parameters travel.

Three statements of ``queries.sql`` share one conflict rule (an incomplete job with the key
wins, a finished one is replaced):

- ``enqueue_job``: one job without a once-mark, the common ``queue.enqueue(...)``. One
  upsert with the wake-up in the same statement, positional parameters, prepared.
- ``enqueue_jobs``: a batch without once-marks whose payloads are JSON. Each column travels
  as one text, its values joined by a separator: the client joins at C speed, where binary
  arrays cost about 4 us per job in Python. A batch larger than :data:`CHUNK` is sent as
  several statements in one transaction, pipelined: the server inserts a chunk while the
  client encodes the next.
- ``enqueue``: everything else (once-marks, payloads that are not JSON, values holding a
  separator), as arrays, with the marks taken in the same statement.

Claims take jobs by priority, then ``ready_at``: a job's due time or, for a job due at once
(``due`` 0 or past), the time of the call on the client's clock, so that it sorts after a
retry or a scheduled job that was due before (the ``enqueue`` query).

A payload that looks like JSON (text starting with ``{``) is sent as JSON unchecked: the
server's ``jsonb`` input check is the check. When the server refuses one (a data error
before anything was written), the call runs again with every payload checked by
:func:`~conveyor.backends.postgres.codec.split_payload`, which sends what is not JSON to
``payload_raw``; the backend then checks payloads itself from then on. A caller's
connection (transactional enqueue) always gets checked payloads: an error would abort the
caller's transaction.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg

from conveyor.backends.base import NewJob, Payload
from conveyor.backends.postgres.codec import split_payload
from conveyor.backends.postgres.database import Database, Params, Row, execute
from conveyor.errors import BackendError

#: Joins the values of one column in ``enqueue_jobs`` (JSON text never holds it raw).
SEPARATOR = "\x1f"
#: Stands for a NULL group key in ``enqueue_jobs``.
NULL_GROUP = "\x1e"
#: Jobs per statement when a batch is sent in chunks.
CHUNK = 1000

Stored = tuple[str | None, bytes | None, bool]


class Pending:
    """The jobs of one call, taken from their iterable as they are needed.

    A key or a ``once`` token repeated within a call can only succeed once, as if the
    jobs were inserted one after the other: the later duplicates are not sent.

    Attributes:
        sent: The jobs to send, so far (each key and once token once).
        flags: For each job taken so far, whether it is sent.
        keys: For each job taken so far, its key.
    """

    def __init__(self, jobs: Iterable[NewJob]) -> None:
        self._source: Iterator[NewJob] | None = iter(jobs)
        self._keys: set[str] = set()
        self._onces: set[str] = set()
        self.sent: list[NewJob] = []
        self.flags: list[bool] = []
        self.keys: list[str] = []

    def take(self, count: int) -> bool:
        """Take jobs until ``count`` are to be sent; False once the iterable is exhausted."""
        source = self._source
        while source is not None and len(self.sent) < count:
            job = next(source, None)
            if job is None:
                self._source = source = None
                break
            duplicate = job.key in self._keys or (job.once is not None and job.once in self._onces)
            self.flags.append(not duplicate)
            self.keys.append(job.key)
            if not duplicate:
                self.sent.append(job)
                self._keys.add(job.key)
                if job.once is not None:
                    self._onces.add(job.once)
        return source is not None

    def take_all(self) -> list[NewJob]:
        """Every job to send."""
        while self.take(len(self.sent) + CHUNK):
            pass
        return self.sent

    def results(self, inserted: set[str]) -> list[bool]:
        """For each job, whether it was inserted, given the inserted keys."""
        return [flag and key in inserted for flag, key in zip(self.flags, self.keys, strict=True)]


def _as_json(payload: Payload) -> Stored | None:
    """``payload`` as JSON text, unchecked, or None when it does not look like JSON."""
    if isinstance(payload, str):
        text, is_bytes = payload, False
    else:
        try:
            text, is_bytes = bytes(payload).decode("utf-8"), True
        except UnicodeDecodeError:
            return None
    if not text.startswith("{") or not (text.isascii() or _encodable(text)):
        return None
    return text, None, is_bytes


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def job_params(job: NewJob, queue: str, channel: str, check: bool) -> tuple[Any, ...]:
    """Parameters of ``enqueue_job``; ``check`` checks the payload on the client."""
    stored = None if check else _as_json(job.payload)
    text, raw, is_bytes = stored or split_payload(job.payload)
    due, now = float(job.due or 0.0), time.time()
    notice = "w:" + queue
    return (queue, job.key, job.function, text, raw, is_bytes, int(job.priority), due,
            max(due, now), job.group_key, channel, notice)  # fmt: skip


def _joined(values: list[str], count: int) -> str | None:
    text = SEPARATOR.join(values)
    return text if text.count(SEPARATOR) == count - 1 else None


def joined_params(jobs: Sequence[NewJob], now: float) -> dict[str, Any] | None:
    """Parameters of ``enqueue_jobs`` (``now``: the time of the call), or None when the jobs
    cannot travel that way.

    They cannot when there are fewer than two (an empty text splits into no value), when a
    job has a once-mark, when the payloads are not all ``str`` or all ``bytes``, when one
    does not start like a JSON object, or when a value holds a separator.
    """
    count = len(jobs)
    if count < 2 or any(job.once is not None for job in jobs):
        return None
    payloads = _joined_payloads([job.payload for job in jobs], count)
    keys = _joined([job.key for job in jobs], count)
    functions = _joined([job.function for job in jobs], count)
    groups = [job.group_key for job in jobs]
    nulls = groups.count(None)
    group_text = _joined([NULL_GROUP if g is None else g for g in groups], count)
    if payloads is None or keys is None or functions is None or group_text is None:
        return None
    if group_text.count(NULL_GROUP) != nulls:
        return None
    return {
        "keys": keys,
        "functions": functions,
        "payloads": payloads[0],
        "is_bytes": payloads[1],
        "priorities": ",".join([str(int(job.priority)) for job in jobs]),
        "dues": ",".join([repr(float(job.due or 0.0)) for job in jobs]),
        "groups": group_text,
        "now": now,
    }


def _joined_payloads(payloads: list[Payload], count: int) -> tuple[str, bool] | None:
    if all(isinstance(p, str) for p in payloads):
        text = _joined(payloads, count)  # type: ignore[arg-type]
        is_bytes = False
    elif all(isinstance(p, bytes) for p in payloads):
        try:
            text = _joined([p.decode("utf-8") for p in payloads], count)  # type: ignore[union-attr]
        except UnicodeDecodeError:
            return None
        is_bytes = True
    else:
        return None
    # Every payload starts with "{" when the text does and so does each value after a
    # separator; the server checks the rest.
    if text is None or not text.startswith("{") or text.count(SEPARATOR + "{") != count - 1:
        return None
    if not (text.isascii() or _encodable(text)):
        return None
    return text, is_bytes


def array_params(jobs: Sequence[NewJob], now: float) -> dict[str, Any]:
    """Parameters of ``enqueue`` (payloads checked on the client; ``now``: the time of the
    call)."""
    payloads: list[str | None] = []
    raws: list[bytes | None] = []
    is_bytes: list[bool] = []
    for job in jobs:
        text, raw, was_bytes = split_payload(job.payload)
        payloads.append(text)
        raws.append(raw)
        is_bytes.append(was_bytes)
    return {
        "keys": [job.key for job in jobs],
        "functions": [job.function for job in jobs],
        "payloads": payloads,
        "raws": raws,
        "is_bytes": is_bytes,
        "priorities": [int(job.priority) for job in jobs],
        "dues": [float(job.due or 0.0) for job in jobs],
        "groups": [job.group_key for job in jobs],
        "onces": [job.once for job in jobs],
        "once_ttls": [float(job.once_ttl) for job in jobs],
        "now": float(now),
    }


def _refused(exc: BackendError) -> bool:
    """Whether the server refused a value (SQLSTATE class 22): nothing was written."""
    return isinstance(exc.detail, psycopg.DataError)


class Enqueuer:
    """Inserts the jobs of one queue with the statement that fits each call.

    Args:
        queries: The backend's named queries.
        queue: The queue's name.
        channel: The NOTIFY channel of the queue's schema.
    """

    def __init__(self, queries: dict[str, str], queue: str, channel: str) -> None:
        self.queries = queries
        self.queue = queue
        self.channel = channel
        #: Whether payloads are checked on the client (set once the server refused one).
        self.check = False

    def _common(self) -> dict[str, Any]:
        return {"queue": self.queue, "channel": self.channel}

    async def insert(self, db: Database, jobs: Iterable[NewJob]) -> list[bool]:
        """Insert jobs on a pooled connection; see the protocol's ``enqueue``.

        ``jobs`` is read as it is sent: a batch of more than :data:`CHUNK` jobs is encoded
        chunk by chunk while the server inserts the previous one, so a generator that
        builds the jobs overlaps with the server too.

        Returns:
            For each job, whether it was inserted.

        Raises:
            BackendError: When the statement fails (a lost connection is not retried:
                it is unknown whether the jobs were stored).
        """
        if isinstance(jobs, list | tuple) and len(jobs) == 1 and jobs[0].once is None:
            job, query = jobs[0], self.queries["enqueue_job"]  # the common case, kept short

            def one(check: bool) -> Awaitable[list[Row]]:
                params = job_params(job, self.queue, self.channel, check)
                return db.fetch("enqueue", query, params, idempotent=False)

            return [bool(await self._checked_if_refused(one))]
        pending = Pending(jobs)
        rows = await self._checked_if_refused(lambda check: self._insert(db, pending, check))
        return pending.results({row[0] for row in rows})

    async def _checked_if_refused(
        self, attempt: Callable[[bool], Awaitable[list[Row]]]
    ) -> list[Row]:
        """Run ``attempt(check)`` unchecked, and checked if the server refused a payload."""
        if self.check:
            return await attempt(True)
        try:
            return await attempt(False)
        except BackendError as exc:
            if not _refused(exc):
                raise
        rows = await attempt(True)
        self.check = True  # only when checking made the call work
        return rows

    async def _insert(self, db: Database, pending: Pending, check: bool) -> list[Row]:
        if pending.take(CHUNK + 1):
            return await db.fetch_pipelined("enqueue", lambda: self._chunks(pending, check))
        jobs = pending.sent
        if not jobs:
            return []
        if len(jobs) == 1 and jobs[0].once is None:
            one = job_params(jobs[0], self.queue, self.channel, check)
            return await db.fetch("enqueue", self.queries["enqueue_job"], one, idempotent=False)
        query, params = self._batch(jobs, check)
        return await db.fetch("enqueue", query, params, idempotent=False)

    def _chunks(self, pending: Pending, check: bool) -> Iterator[tuple[str, Params]]:
        # A generator: each chunk is taken and encoded only when the previous one has been
        # sent. A second attempt reads the jobs taken by the first one again.
        for start in itertools.count(0, CHUNK):
            pending.take(start + CHUNK)
            chunk = pending.sent[start : start + CHUNK]
            if not chunk:
                return
            yield self._batch(chunk, check)

    def _batch(self, jobs: Sequence[NewJob], check: bool) -> tuple[str, Params]:
        now = time.time()
        params = None if check else joined_params(jobs, now)
        if params is not None:
            return self.queries["enqueue_jobs"], {**self._common(), **params}
        return self.queries["enqueue"], {**self._common(), **array_params(jobs, now)}

    async def insert_in(
        self, conn: psycopg.AsyncConnection[Any], jobs: Iterable[NewJob]
    ) -> list[bool]:
        """Insert jobs in the caller's transaction on ``conn``, payloads checked, in one
        statement.

        Returns:
            For each job, whether it was inserted.

        Raises:
            BackendError: When the statement fails.
        """
        pending = Pending(jobs)
        rows = await self._insert_in(conn, pending.take_all())
        return pending.results({row[0] for row in rows})

    async def _insert_in(
        self, conn: psycopg.AsyncConnection[Any], jobs: Sequence[NewJob]
    ) -> list[Row]:
        if not jobs:
            return []
        query: str
        params: Params
        if len(jobs) == 1 and jobs[0].once is None:
            query = self.queries["enqueue_job"]
            params = job_params(jobs[0], self.queue, self.channel, True)
        else:
            query, params = self._batch(jobs, check=True)
        try:
            return await execute(conn, query, params)
        except psycopg.Error as exc:
            raise BackendError("postgres", f"enqueue failed: {exc}", exc) from exc
