"""Running the backend's statements: the pool, liveness, retries and error mapping.

Every operation is one statement on one pooled autocommit connection: one round trip and
one transaction (a large enqueue is the exception: several statements pipelined in one
transaction, see :meth:`Database.fetch_pipelined`). Before use, a connection gets a check
that costs no round trip (read what the server may have sent, such as the FATAL of a
``pg_terminate_backend`` or a shutdown); a dead one is closed, which makes the pool
replace it. A connection of the database's own, beside the pool (:class:`Held`), runs a
statement when it is free: it skips the pool's checkout and return. An operation that
fails because its connection died runs again on another connection when the server says
that the session was shut down (SQLSTATE class 57: admin or crash shutdown; once per
connection that may have died with it), or once when running it twice is harmless.

A statement that must not run twice (a claim takes more jobs each time) names a second
statement, its *again*, that runs instead of it on every retry: one that finds what the
first run did, if it committed, and is harmless to run twice itself (see ``claim_again``).
Such a statement never counts on the server's word that it did not run: a crash shutdown
can end a session after its commit, before the reply. Everything else becomes
:class:`~conveyor.errors.BackendError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from conveyor.errors import BackendError

Row = tuple[Any, ...]
#: Named parameters (``%(name)s``) or positional ones (``%s``).
Params = Mapping[str, Any] | Sequence[Any]


def alive(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether a connection looks usable, without a round trip."""
    if conn.closed or conn.broken:
        return False
    pgconn = conn.pgconn
    try:
        pgconn.consume_input()  # non-blocking: picks up a FATAL or EOF the server sent
    except psycopg.OperationalError:
        return False
    return pgconn.status == pq.ConnStatus.OK


def _did_not_run(exc: psycopg.Error) -> bool:
    """The server says so: the session was shut down before or while running the statement
    (almost always before its commit; see the module's notes)."""
    return (exc.sqlstate or "").startswith("57P")


def _connection_lost(exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))
    )


Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


class Held:
    """One autocommit connection kept beside the pool, with one cursor, for one statement
    at a time.

    Taking it is a flag and a liveness check; the pool's checkout and return cost some
    30 us of client time per statement. It is made in the background on first use (the
    pool serves meanwhile), replaced in the background when found dead or left in an
    unknown state (an error mid-statement, a cancellation), and not retried for a second
    after a failed connect. It is not counted in the pool's size.

    Args:
        connect: Makes the connection (autocommit, as the pool's).
    """

    RETRY_S = 1.0

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._cursor: psycopg.AsyncCursor[Row] | None = None
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._retry_at = 0.0

    def take(self) -> psycopg.AsyncCursor[Row] | None:
        """The cursor of the held connection if it is free and alive, else None; give
        it back with :meth:`give_back`."""
        if self._busy:
            return None
        conn, cursor = self._conn, self._cursor
        if conn is None or cursor is None or not alive(conn):
            self._replace()
            return None
        self._busy = True
        return cursor

    def give_back(self) -> None:
        """Free the connection; replace it unless it is idle outside a transaction."""
        self._busy = False
        conn = self._conn
        if conn is not None and conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            self._replace()

    def _replace(self) -> None:
        # Nothing is held while a connect runs: the task sets the new one when it ends.
        dead, self._conn, self._cursor = self._conn, None, None
        if self._task is not None:
            return
        connect = time.monotonic() >= self._retry_at
        if dead is not None or connect:
            self._task = asyncio.get_running_loop().create_task(self._reconnect(dead, connect))

    async def _reconnect(self, dead: psycopg.AsyncConnection[Any] | None, connect: bool) -> None:
        try:
            if dead is not None:
                await dead.close()
            if connect:
                conn = await self._connect()
                self._conn, self._cursor = conn, conn.cursor(row_factory=tuple_row)
        except Exception:  # the pool serves; its own errors tell what is wrong
            self._retry_at = time.monotonic() + self.RETRY_S
        finally:
            self._task = None

    async def close(self) -> None:
        """Stop a connect in progress and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn, self._cursor = self._conn, None, None
        self._retry_at = float("inf")  # closed for good
        if conn is not None:
            await conn.close()


class Database:
    """A pool of connections and the one way the backend runs a statement.

    Args:
        pool: The pool (the backend's own, or the user's).
        owns_pool: Whether it is the backend's own pool, which also gets a :class:`Held`
            connection beside it (a user's pool decides alone how many connections there
            are).
        timeout: Seconds to wait for a connection.
        manages_pool: Whether :meth:`open` opens it and :meth:`close` closes it (SAQ's
            ``manage_pool_lifecycle``); ``owns_pool`` when None.
        sizes: ``(min_size, max_size)`` that :meth:`open` resizes a managed user's pool to.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        owns_pool: bool,
        timeout: float,
        *,
        manages_pool: bool | None = None,
        sizes: tuple[int, int] | None = None,
    ) -> None:
        self.pool = pool
        self.owns_pool = owns_pool
        self.manages_pool = owns_pool if manages_pool is None else manages_pool
        self.timeout = timeout
        self.held = Held(self._connect_held) if owns_pool else None
        self._sizes = sizes

    async def _connect_held(self) -> psycopg.AsyncConnection[Any]:
        conninfo, kwargs = await self.conninfo()
        return await psycopg.AsyncConnection.connect(conninfo, **kwargs)

    async def open(self) -> None:
        """Open the pool when it is managed here (``open=False`` then ``await
        pool.open()``), resized to ``sizes`` when it is a user's."""
        if self.manages_pool:
            try:
                await self.pool.open(wait=True, timeout=self.timeout)
                if self._sizes is not None and not self.owns_pool:
                    await self.pool.resize(*self._sizes)
            except psycopg.Error as exc:
                await self.pool.close()
                raise BackendError("postgres", f"cannot connect: {exc}", exc) from exc

    async def close(self) -> None:
        """Close the held connection, and the pool when it is managed here."""
        if self.held is not None:
            await self.held.close()
        if self.manages_pool:
            await self.pool.close()

    async def conninfo(self) -> tuple[str, dict[str, Any]]:
        """The pool's connection string and keyword arguments (for the LISTEN connection)."""
        conninfo: Any = self.pool.conninfo
        kwargs: Any = self.pool.kwargs
        if callable(conninfo):
            conninfo = conninfo()
            conninfo = await conninfo if inspect.isawaitable(conninfo) else conninfo
        if callable(kwargs):
            kwargs = kwargs()
            kwargs = await kwargs if inspect.isawaitable(kwargs) else kwargs
        return str(conninfo), dict(kwargs or {})

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A live pooled connection, returned to the pool afterwards."""
        conn = await self._checkout()
        try:
            yield conn
        finally:
            await self.pool.putconn(conn)

    async def _checkout(self) -> psycopg.AsyncConnection[Any]:
        # After a mass disconnection every pooled connection may be dead: drop them one by
        # one (the pool opens replacements) instead of failing the operation.
        for _ in range((self.pool.max_size or 1) + 1):
            conn: psycopg.AsyncConnection[Any] = await self.pool.getconn(timeout=self.timeout)
            if alive(conn):
                return conn
            await conn.close()
            await self.pool.putconn(conn)
        last: psycopg.AsyncConnection[Any] = await self.pool.getconn(timeout=self.timeout)
        return last

    async def fetch(
        self,
        name: str,
        query: str,
        params: Params,
        *,
        idempotent: bool = True,
        conflict_retries: int = 0,
        again: str | None = None,
    ) -> list[Row]:
        """Run one statement and return its rows (empty for a statement without any).

        Args:
            name: The query's name, for error messages.
            query: The SQL.
            params: Its parameters.
            idempotent: Whether running it twice is harmless, so that it may be retried
                when the connection died and it is unknown whether it ran.
            conflict_retries: How many times to run it again after a unique violation.
            again: For a statement that is not idempotent: the statement (same parameters)
                that every retry after a lost connection runs instead, which finds what the
                first run did if it committed and may itself run twice.

        Raises:
            BackendError: When it fails, or the server cannot be reached in time.
        """
        lost_retry = True
        # Each connection killed with the server may fail one attempt (its FATAL is read as
        # the statement's result): the statement did not run, so the next one is tried.
        dead_left = (self.pool.max_size or 1) + 1
        while True:
            try:
                held = self.held
                if held is not None and (cursor := held.take()) is not None:
                    try:
                        return await _run(cursor, query, params)
                    finally:
                        held.give_back()
                # Not self.connection(): its context manager costs a few us per statement.
                conn = await self._checkout()
                try:
                    return await _execute_pooled(conn, query, params)
                finally:
                    await self.pool.putconn(conn)
            except psycopg.errors.UniqueViolation as exc:
                if conflict_retries <= 0:
                    raise _error(name, exc) from exc
                conflict_retries -= 1
            except psycopg.Error as exc:
                if _did_not_run(exc) and dead_left > 0:
                    dead_left -= 1
                elif lost_retry and (idempotent or again) and _connection_lost(exc):
                    lost_retry = False
                else:
                    raise _error(name, exc) from exc
                if again:
                    query = again

    async def fetch_pipelined(
        self, name: str, statements: Callable[[], Iterable[tuple[str, Params]]]
    ) -> list[Row]:
        """Run statements in one transaction, pipelined, and return all their rows in order.

        Each statement is sent as soon as the iterable gives it, without waiting for the
        previous one's result: the server runs one while the caller builds the next. Either
        all of them take effect or none does. Not retried after a lost connection (it is
        unknown whether the transaction committed), unless the server says it did not run.

        Args:
            name: What runs, for error messages.
            statements: Gives a fresh iterable of ``(query, params)`` for each attempt.

        Raises:
            BackendError: When one fails, or the server cannot be reached in time.
        """
        lost_retry = True
        while True:
            try:
                async with self.connection() as conn:
                    return await _execute_pipelined(conn, statements())
            except psycopg.Error as exc:
                if not (lost_retry and _did_not_run(exc)):
                    raise _error(name, exc) from exc
                lost_retry = False


async def _execute_pipelined(
    conn: psycopg.AsyncConnection[Any], statements: Iterable[tuple[str, Params]]
) -> list[Row]:
    cursors = []
    async with conn.pipeline(), conn.transaction():
        for query, params in statements:
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(query, params)
            cursors.append(cursor)
    rows: list[Row] = []
    for cursor in cursors:
        rows.extend(await cursor.fetchall())
    return rows


async def execute(conn: psycopg.AsyncConnection[Any], query: str, params: Params) -> list[Row]:
    """Run one statement on ``conn`` as it is (in the caller's transaction, if any)."""
    return await _run(conn.cursor(row_factory=tuple_row), query, params)


async def _run(cur: psycopg.AsyncCursor[Row], query: str, params: Params) -> list[Row]:
    await cur.execute(query, params)
    # pgresult, not description: description builds its column objects on every call.
    result = cur.pgresult
    if result is None or result.status != pq.ExecStatus.TUPLES_OK:
        return []
    return await cur.fetchall()


async def _execute_pooled(
    conn: psycopg.AsyncConnection[Any], query: str, params: Params
) -> list[Row]:
    # A pool not in autocommit mode (a user's) would leave the statement uncommitted.
    if conn.autocommit:
        return await execute(conn, query, params)
    async with conn.transaction():
        return await execute(conn, query, params)


def _error(name: str, exc: psycopg.Error) -> BackendError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendError("postgres", f"{name} failed: {message}", exc)


def first(rows: Sequence[Row], default: Any = None) -> Any:
    """The first column of the first row, or ``default``."""
    return rows[0][0] if rows else default
