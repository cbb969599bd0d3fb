"""The PostgreSQL backend: every protocol operation is one statement from ``queries.sql``.

Batches (enqueue, claim, renew, finish, logs) are single statements over arrays, so N jobs
cost one round trip. Claiming uses ``FOR UPDATE SKIP LOCKED`` and creates the run rows in
the same statement; ``enqueue`` and ``finish`` notify listeners in the same transaction.

Fencing: claim and recover give each job a new token from the schema's ``jobs_token_seq``
(stored in ``jobs.token``, returned as :attr:`~conveyor.backends.base.JobRow.token`); renew,
finish and update with a token check it in the same statement that writes (see the
queries). Claim and recover also store a random number of the call (``claim_id``) on the
rows they take: after a connection lost while one ran, the retry finds those rows instead
of taking more (``claim_again``, ``recover_again``).

Presence: a worker's leases are also vouched for by a lock its session holds (see
:mod:`~conveyor.backends.postgres.presence`), so that :meth:`PostgresBackend.expire_dead_leases`
ends the leases of a worker whose session is gone without waiting for them to expire.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from conveyor.backends.base import (
    Capabilities,
    JobRow,
    Lease,
    LogLine,
    LogRow,
    NewJob,
    Payload,
    Renewal,
    RunEnd,
    RunFilter,
    RunRecord,
    Transition,
)
from conveyor.backends.postgres import batches, sqlfiles
from conveyor.backends.postgres.codec import (
    job_row,
    join_opaque,
    log_line,
    run_id_number,
    run_record,
    split_opaque,
    split_payload,
    token_number,
)
from conveyor.backends.postgres.config import ALL_PRIORITIES, Settings, settings_from
from conveyor.backends.postgres.database import Database, Params, Row, first
from conveyor.backends.postgres.enqueue import Enqueuer
from conveyor.backends.postgres.listener import Listener
from conveyor.backends.postgres.migrate import migrate
from conveyor.backends.postgres.presence import SETTLED_S, SILENT_S, Presence
from conveyor.backends.postgres.sessions import session_connector
from conveyor.backends.postgres.statistics import Statistics
from conveyor.errors import BackendError, ConfigurationError

#: Every status a job row can have (the jobs_status constraint).
STATUSES = ("queued", "active", "aborting", "complete", "failed", "aborted")
#: The columns of the count query, in order.
_COUNTED = (*STATUSES, "scheduled")
#: How often a claim that lost the race for a group to another claim is run again.
_GROUP_CONFLICT_RETRIES = 3


def channel_name(schema: str) -> str:
    """The NOTIFY channel of a schema (at most 63 bytes, as PostgreSQL requires)."""
    name = f"conveyor_{schema}"
    if len(name) <= 63:
        return name
    return "conveyor_" + hashlib.sha1(schema.encode()).hexdigest()[:24]


def _claim_id() -> int:
    """A random number for one claim or recover call (63 bits: a positive bigint), drawn
    from the OS, so that forked processes never share one."""
    return int.from_bytes(os.urandom(8), "big") >> 1


def _applied(rows: Sequence[Row], count: int) -> list[bool]:
    """finish's answer (the numbers of the transitions applied, from 1) as one bool each."""
    numbers = set(rows[0][1] or ()) if rows else set()
    return [n in numbers for n in range(1, count + 1)]


def _consume_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so that an abandoned read does not log a warning


class PostgresBackend:
    """A queue stored in PostgreSQL tables, in a schema of its own.

    Args:
        queue_name: The queue's name; queues of one schema share tables, not jobs.
        settings: Connection and behaviour settings (see :func:`from_url`).
        pool: A ``psycopg_pool.AsyncConnectionPool`` built by the caller, used instead of
            a pool of the backend's own.
        manage_pool_lifecycle: Whether :meth:`connect` opens ``pool`` (and resizes it to
            the settings' ``min_size`` and ``max_size``) and :meth:`disconnect` closes it,
            as SAQ's option of that name; by default only the backend's own pool is
            managed, and a user's pool must be open before :meth:`connect`.

    Raises:
        ConfigurationError: Without a URL or a pool, or with ``manage_pool_lifecycle``
            false and no pool to leave to its owner.
    """

    name = "postgres"
    capabilities = Capabilities(
        cross_process=True, durable=True, transactional_enqueue=True, lazy_enqueue=True
    )

    def __init__(
        self,
        queue_name: str,
        settings: Settings | None = None,
        *,
        pool: AsyncConnectionPool[Any] | None = None,
        manage_pool_lifecycle: bool | None = None,
    ) -> None:
        self.queue_name = queue_name
        self.settings = settings or Settings()
        if pool is None and not self.settings.conninfo:
            raise ConfigurationError("the PostgreSQL backend needs a URL or a pool")
        if pool is None and manage_pool_lifecycle is False:
            raise ConfigurationError(
                "manage_pool_lifecycle=False leaves the pool to its owner, but no pool was "
                "given: pass pool=... (an AsyncConnectionPool you open and close), or drop "
                "the option"
            )
        self._manages_pool = (
            pool is None if manage_pool_lifecycle is None else manage_pool_lifecycle
        )
        self._priorities = self.settings.priorities or ALL_PRIORITIES
        self.sql = sqlfiles.load(self.settings.schema)
        self.channel = channel_name(self.settings.schema)
        self._enqueuer = Enqueuer(self.sql.queries, queue_name, self.channel)
        self._statistics = Statistics(self.sql.queries, self.settings.schema)
        self._user_pool = pool
        self._db: Database | None = None
        self._listener: Listener | None = None
        self._presence: Presence | None = None
        self._seen_generation = 0
        self._reads: set[asyncio.Future[list[Row]]] = set()

    @classmethod
    def from_url(cls, url: str, queue_name: str, **kwargs: Any) -> PostgresBackend:
        """A backend for a ``postgresql://`` URL.

        Args:
            url: ``postgresql://``, ``postgres://``, ``postgresql+psycopg://`` or
                ``postgresql+asyncpg://`` (psycopg is always used). Query options
                ``schema`` (default ``conveyor``), ``poll_interval`` (seconds; polls instead
                of LISTEN), ``prepare_threshold`` (``none`` never prepares), ``pgbouncer``
                (``transaction`` behind PgBouncer in transaction mode) and ``direct_url``
                (a URL straight to PostgreSQL for LISTEN and the presence locks) are
                removed before connecting; see :mod:`~conveyor.backends.postgres.config`.
            queue_name: The queue's name.
            **kwargs: ``pool`` (an ``AsyncConnectionPool`` of your own),
                ``manage_pool_lifecycle`` (see the class), and the options above plus
                ``min_size``, ``max_size``, ``pool_timeout``, ``priorities``; a keyword wins
                over the URL. Without ``schema``, a ``search_path`` in the URL's libpq
                ``options`` names the schema (see
                :mod:`~conveyor.backends.postgres.config`).

        Raises:
            ConfigurationError: For a malformed URL or option.
        """
        pool = kwargs.pop("pool", None)
        manage = kwargs.pop("manage_pool_lifecycle", None)
        return cls(
            queue_name, settings_from(url, **kwargs), pool=pool, manage_pool_lifecycle=manage
        )

    @property
    def pool(self) -> AsyncConnectionPool[Any] | None:
        """The connection pool: the user's, or the backend's own while connected."""
        if self._user_pool is not None:
            return self._user_pool
        return self._db.pool if self._db is not None else None

    # Lifecycle

    def _own_pool(self) -> AsyncConnectionPool[Any]:
        s = self.settings
        kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": s.prepare_threshold}
        if "application_name" not in conninfo_to_dict(s.conninfo):
            kwargs["application_name"] = s.application_name
        return AsyncConnectionPool(
            s.conninfo,
            kwargs=kwargs,
            min_size=s.min_size,
            max_size=s.max_size,
            open=False,
            timeout=s.pool_timeout,
            name=s.application_name,
        )

    async def connect(self) -> None:
        """Open the pool, migrate the schema and start listening. Idempotent.

        Raises:
            BackendError: When the server cannot be reached or the migration fails.
        """
        if self._db is not None:
            return
        user_pool = self._user_pool
        if user_pool is not None and user_pool.closed and not self._manages_pool:
            raise ConfigurationError(
                f"the connection pool {user_pool.name!r} given to the PostgreSQL backend is "
                "not open: open it first (await pool.open()), or pass "
                "manage_pool_lifecycle=True to have the queue open and close it"
            )
        s = self.settings
        db = Database(
            user_pool or self._own_pool(),
            owns_pool=user_pool is None,
            timeout=s.pool_timeout,
            manages_pool=self._manages_pool,
            sizes=(s.min_size, s.max_size),
        )
        await db.open()
        try:
            async with db.connection() as conn:
                await migrate(conn, self.sql)
        except BaseException as exc:
            await db.close()
            if isinstance(exc, psycopg.Error):
                raise BackendError("postgres", f"cannot prepare the schema: {exc}", exc) from exc
            raise
        if self.settings.poll_interval is None:
            # Connections of their own, not pooled: LISTEN and session locks stay on them.
            identity = self.sql.queries["server_identity"]
            own_connection = await session_connector(db, self.settings, identity)
            self._listener = Listener(own_connection, self.channel, self.queue_name)
            self._presence = Presence(own_connection, self.settings.schema)
        self._db = db

    async def _listening(self, timeout: float) -> tuple[Listener | None, bool]:
        # LISTEN starts with the first wait: a process that only enqueues never opens the
        # connection, nor processes the notifications of every enqueue and finish. The
        # second value says it just started: what happened before is unknown, so the
        # caller returns at once (a spurious wake-up) and looks again.
        listener = self._listener
        if listener is None or listener.started:
            return listener, False
        await listener.start(wait=max(0.0, timeout))
        return listener, True

    async def disconnect(self) -> None:
        """Stop listening and close the pool if it is managed here (see the class).
        Idempotent."""
        db, self._db = self._db, None
        listener, self._listener = self._listener, None
        presence, self._presence = self._presence, None
        if listener is not None:
            await listener.stop()
        if presence is not None:
            await presence.stop()
        if db is not None:
            await db.close()

    async def drop(self) -> None:
        """Drop the backend's schema with everything in it (other schemas are untouched)."""
        await self._fetch("drop", {}, idempotent=True)

    def describe(self) -> dict[str, Any]:
        """Engine, address (without password), schema, how workers are woken, and
        PgBouncer's pool mode when one was declared."""
        conninfo = self.settings.conninfo
        if not conninfo and self._user_pool is not None:
            conninfo = self._user_pool.conninfo if isinstance(self._user_pool.conninfo, str) else ""
        info = conninfo_to_dict(conninfo) if conninfo else {}
        address = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
        return {
            "engine": "postgres",
            "queue": self.queue_name,
            "address": f"{address}/{info.get('dbname', '')}",
            "schema": self.settings.schema,
            "wake": "poll" if self.settings.poll_interval else "listen/notify",
            **({"pgbouncer": self.settings.pgbouncer} if self.settings.pgbouncer else {}),
        }

    # Running statements

    def _database(self) -> Database:
        if self._db is None:
            raise BackendError("postgres", "not connected: call connect() first")
        return self._db

    async def _fetch(
        self, name: str, params: Params, *, idempotent: bool = True, again: str | None = None
    ) -> list[Row]:
        return await self._database().fetch(
            name, self.sql.queries[name], params, idempotent=idempotent, again=again
        )

    def _params(self, **params: Any) -> dict[str, Any]:
        return {"queue": self.queue_name, **params}

    # Jobs

    async def enqueue(
        self, jobs: Iterable[NewJob], *, connection: psycopg.AsyncConnection[Any] | None = None
    ) -> list[bool]:
        """Insert jobs; see :meth:`conveyor.backends.base.Backend.enqueue`.

        One statement for one job or a batch of up to a thousand; a larger batch is sent in
        chunks, pipelined in one transaction, and read from ``jobs`` (any iterable) as it
        is sent (see :mod:`~conveyor.backends.postgres.enqueue`).

        Args:
            jobs: The jobs.
            connection: A connection of the caller's: the jobs are inserted in its current
                transaction, in one statement, and nothing is committed. They exist (and
                workers are woken) only if the caller commits.
        """
        if connection is None:
            return await self._enqueuer.insert(self._database(), jobs)
        return await self._enqueuer.insert_in(connection, jobs)

    async def claim(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Claim jobs in one statement; see the protocol.

        After a connection lost while the claim ran, the retry returns the jobs it took, if
        it committed, and claims anew only if it did not (``claim_again``).
        """
        if limit <= 0:
            return []
        if self._listener is not None:
            self._seen_generation = self._listener.work_generation
        params = self._params(
            worker_id=worker_id,
            now=float(now),
            now_ms=int(now * 1000),
            lease_until=float(now + lease_s),
            claim_id=_claim_id(),
            present=vouch and await self._present(worker_id),
            lowest=self._priorities[0],
            highest=self._priorities[1],
        )
        # The batch size is a literal of the statement: see the claim query.
        size = str(int(limit))
        queries = self.sql.queries
        rows = await self._database().fetch(
            "claim",
            queries["claim"].replace("{{limit}}", size),
            params,
            idempotent=False,
            again=queries["claim_again"].replace("{{limit}}", size),
            conflict_retries=_GROUP_CONFLICT_RETRIES,
        )
        return [job_row(row) for row in rows]

    async def _present(self, worker_id: str) -> bool:
        """Whether the presence lock of ``worker_id`` is held (taken at its first call)."""
        presence = self._presence
        if presence is None:
            return False
        return presence.held(worker_id) or await presence.hold(worker_id)

    async def _next_due(self) -> float | None:
        # Workers cancel their wait as soon as they have something to do; cancelling a
        # query mid-flight would close its connection, so the read finishes on its own.
        query = asyncio.ensure_future(self._fetch("next_due", self._params(now=time.time())))
        self._reads.add(query)
        query.add_done_callback(self._reads.discard)
        query.add_done_callback(_consume_error)
        try:
            rows = await asyncio.shield(query)
        except BackendError:
            return time.time() + self.settings.listen_fallback  # the database is away: poll
        due = first(rows)
        return None if due is None else float(due)

    async def wait_for_work(self, timeout: float) -> None:
        """Wait for a NOTIFY from an enqueue or a finish, or for the next due job."""
        listener, just_started = await self._listening(timeout)
        if just_started:
            return
        if listener is None:
            next_due = await self._next_due()
            if next_due is not None:
                timeout = min(timeout, next_due - time.time())
            await asyncio.sleep(max(0.0, min(timeout, self.settings.poll_interval or timeout)))
            return
        if self._woken(listener):
            return  # a notification came since the last claim
        next_due = await self._next_due()
        if next_due is not None:
            timeout = min(timeout, next_due - time.time())
        if timeout <= 0 or self._woken(listener):
            return
        if not listener.listening:
            timeout = min(timeout, self.settings.listen_fallback)
        await listener.work.wait(timeout)
        self._seen_generation = listener.work_generation

    def _woken(self, listener: Listener) -> bool:
        if listener.work_generation == self._seen_generation:
            return False
        self._seen_generation = listener.work_generation
        return True

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up.

        False in ``poll_interval`` mode, and until the first :meth:`wait_for_work` or
        :meth:`wait_for_finish` starts it.
        """
        return self._listener is not None and self._listener.listening

    async def renew(
        self,
        worker_id: str,
        leases: Sequence[Lease],
        lease_s: float,
        now: float,
        *,
        vouch: bool = True,
    ) -> Renewal:
        """Extend the leases still held, in one statement; see the protocol.

        Retried after a lost connection: extending a lease twice is harmless.
        """
        renewal = Renewal()
        if not leases:
            return renewal
        tokens = [token_number(lease.token) for lease in leases]
        params = self._params(
            keys=[lease.key for lease in leases],
            tokens=tokens,
            lease_until=float(now + lease_s),
            now_ms=int(now * 1000),
            present=vouch and self._presence is not None and self._presence.held(worker_id),
        )
        rows = await self._fetch("renew", params)
        held: dict[tuple[str, int], bool] = {(key, token): flag for key, token, flag in rows}
        for lease, token in zip(leases, tokens, strict=True):
            aborting = held.get((lease.key, token))
            if aborting is None:
                renewal.lost.append(lease.key)
            elif aborting:
                renewal.aborting.append(lease.key)
        return renewal

    async def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        """Apply transitions and end their runs in one statement; see the protocol.

        Retried after a lost connection. A transition with a token that the first attempt
        applied is refused by the second (its token was cleared), so it is then reported
        False although it was stored.
        """
        if not transitions:
            return []
        params = self._params(
            channel=self.channel, now=time.time(), **batches.finish_params(transitions)
        )
        return _applied(await self._fetch("finish", params), len(transitions))

    async def finish_with_logs(
        self, transitions: Sequence[Transition], rows: Sequence[LogRow]
    ) -> list[bool]:
        """Store log lines and apply transitions in one statement (one round trip, one
        transaction: both are stored or neither); see
        :class:`~conveyor.backends.base.FinishesWithLogs`.

        Retried after a lost connection as :meth:`finish` is: a line stored by the first
        attempt is skipped by the second.
        """
        params = self._params(
            channel=self.channel,
            now=time.time(),
            **batches.finish_params(transitions),
            **batches.log_params(rows),
        )
        return _applied(await self._fetch("finish_with_logs", params), len(transitions))

    async def update(self, key: str, payload: Payload, token: str | None = None) -> bool:
        """Store a payload (only under the current lease's token, when given); see the
        protocol."""
        text, raw, is_bytes = split_payload(payload)
        params = self._params(
            key=key,
            payload=text,
            raw=raw,
            is_bytes=is_bytes,
            now_ms=int(time.time() * 1000),
            channel=self.channel,
            fenced=token is not None,
            token=0 if token is None else token_number(token),
        )
        return bool(await self._fetch("update", params))

    async def abort(self, key: str, payload: Payload, now: float) -> str | None:
        """Abort a job; returns the status it had."""
        text, raw, is_bytes = split_payload(payload)
        params = self._params(key=key, payload=text, raw=raw, is_bytes=is_bytes)
        rows = await self._fetch("abort", params, idempotent=False)
        return first(rows)  # type: ignore[no-any-return]

    async def recover(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Take over expired leases under new tokens; see the protocol.

        After a connection lost while it ran, the retry returns the jobs it took, if it
        committed (``recover_again``), as :meth:`claim` does.
        """
        if limit <= 0:
            return []
        params = self._params(
            worker_id=worker_id,
            limit=int(limit),
            now=float(now),
            lease_until=float(now + lease_s),
            claim_id=_claim_id(),
            present=vouch and await self._present(worker_id),
        )
        rows = await self._fetch(
            "recover", params, idempotent=False, again=self.sql.queries["recover_again"]
        )
        return [job_row(row) for row in rows]

    async def expire_dead_leases(self, now: float) -> int:
        """End at once the leases of workers whose database session is gone.

        A lease ends (its ``lease_until`` becomes 0, so that the next :meth:`recover` takes
        the job over) when its owner held its presence lock when it last claimed, recovered
        or renewed it, nobody holds that lock now, the owner has not renewed it for 2 s,
        and this backend's own presence session has lived 2 s (see
        :mod:`~conveyor.backends.postgres.presence` for why). Never a lease whose owner
        still holds its lock or still renews it. Without a presence session of its own
        (``poll_interval`` mode, or while it connects) it ends nothing.

        Args:
            now: The current time (epoch seconds).

        Returns:
            How many leases it ended.
        """
        presence = self._presence
        if presence is None:
            return 0
        presence.start()
        if presence.pid is None:
            return 0
        params = self._params(
            namespace=presence.namespace,
            pid=presence.pid,
            now=float(now),
            silent_s=SILENT_S,
            settled_s=SETTLED_S,
        )
        return int(first(await self._fetch("expire_dead_leases", params), 0))

    async def get(self, keys: Sequence[str]) -> list[JobRow | None]:
        """Load jobs by key, in order."""
        if not keys:
            return []
        rows = await self._fetch("get", self._params(keys=list(keys)))
        found = {row[0]: job_row(row) for row in rows}
        return [found.get(key) for key in keys]

    async def list_jobs(
        self, statuses: Sequence[str] | None, offset: int, limit: int
    ) -> list[JobRow]:
        """Jobs newest first, paginated."""
        wanted = sorted(STATUSES if statuses is None else set(statuses))
        page = {"offset": max(0, int(offset)), "limit": max(0, int(limit))}
        rows = await self._fetch("list_jobs", self._params(statuses=wanted, **page))
        return [job_row(row) for row in rows]

    async def count(self, statuses: Sequence[str]) -> dict[str, int]:
        """Jobs per status; ``scheduled`` counts queued jobs not yet due."""
        out = dict.fromkeys(statuses, 0)
        params = self._params(statuses=sorted(out), now=time.time())
        [counts] = await self._fetch("count", params)
        for status, total in zip(_COUNTED, counts, strict=True):
            if status in out:
                out[status] = int(total or 0)
        return out

    async def wait_for_finish(self, keys: Sequence[str], timeout: float) -> None:
        """Wait for a NOTIFY from a finish or an update (or poll)."""
        listener, just_started = await self._listening(timeout)
        if just_started:
            return
        if listener is None:
            await asyncio.sleep(max(0.0, min(timeout, self.settings.poll_interval or timeout)))
            return
        if not listener.listening:
            timeout = min(timeout, self.settings.listen_fallback)
        await listener.finished.wait(timeout)

    async def expire(self, now: float, limit: int) -> int:
        """Delete a bounded batch of expired finished jobs (and expired marks).

        The backend's periodic maintenance (a worker's sweep runs it), so it also analyzes
        the tables that were never analyzed (see :mod:`~conveyor.backends.postgres.statistics`).
        """
        await self._statistics.maintain(self._database())
        if limit <= 0:
            return 0
        rows = await self._fetch("expire", self._params(now=float(now), limit=int(limit)))
        return int(first(rows, 0))

    # Workers

    async def put_worker(self, worker_id: str, info: Payload, ttl_s: float) -> None:
        """Store a worker's record until ``ttl_s`` from now."""
        data, is_text = split_opaque(info)
        params = self._params(
            worker_id=worker_id, info=data, info_text=is_text, expire_at=time.time() + ttl_s
        )
        await self._fetch("put_worker", params)

    async def delete_worker(self, worker_id: str) -> None:
        """Remove a worker's record."""
        await self._fetch("delete_worker", self._params(worker_id=worker_id))

    async def workers(self) -> dict[str, Payload]:
        """Records of live workers."""
        rows = await self._fetch("workers", self._params(now=time.time()))
        return {row[0]: join_opaque(row[1], row[2]) for row in rows}

    # Runs and logs

    async def list_runs(
        self, filters: RunFilter, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """Runs newest first, paginated, with the total that match."""
        params = self._params(
            status=filters.status,
            function=filters.function,
            key=filters.key,
            since_ms=filters.since_ms,
            until_ms=filters.until_ms,
            error=filters.error_contains,
            offset=max(0, int(offset)),
            limit=max(0, int(limit)),
        )
        rows = await self._fetch("list_runs", params)
        total = int(rows[0][0]) if rows else 0
        return [run_record(row[1:]) for row in rows if row[1] is not None], total

    async def get_run(self, run_id: str) -> RunRecord | None:
        """One run, or None."""
        rows = await self._fetch("get_run", self._params(id=run_id_number(run_id), run_id=run_id))
        return run_record(rows[0]) if rows else None

    async def record_runs(self, starts: Sequence[RunRecord], ends: Sequence[RunEnd]) -> None:
        """Store another backend's runs in one statement; see the protocol."""
        if starts or ends:
            await self._fetch("record_runs", self._params(**batches.record_params(starts, ends)))

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        """Store log lines of any number of runs in one statement."""
        if lines:
            params = self._params(**batches.log_params(batches.line_rows(lines)))
            await self._fetch("append_logs", params)

    async def read_logs(self, run_id: str, after_seq: int, limit: int) -> list[LogLine]:
        """A run's lines after ``after_seq``, in order."""
        params = self._params(run_id=run_id, after_seq=int(after_seq), limit=max(0, int(limit)))
        return [log_line(row) for row in await self._fetch("read_logs", params)]

    async def purge_runs(self, before_ms: int, limit: int) -> int:
        """Delete a bounded batch of old finished runs with their logs."""
        if limit <= 0:
            return 0
        params = self._params(before_ms=int(before_ms), limit=int(limit))
        return int(first(await self._fetch("purge_runs", params), 0))
