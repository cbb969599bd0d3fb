"""Running the backend's statements: the pool, liveness, retries and error mapping.

Every operation is one statement on one pooled autocommit connection: one round trip and
one transaction (a large enqueue is the exception: several statements pipelined in one
transaction, see :meth:`Database.fetch_pipelined`). Before use, a connection gets a check
that costs no round trip (read what the server may have sent, such as the FATAL of a
``pg_terminate_backend`` or a shutdown); a dead one is closed, which makes the pool
replace it. An operation that fails because its connection died is retried once on
another connection when the server guarantees that the statement did not run (SQLSTATE
class 57: admin or crash shutdown), or when running it twice is harmless. Everything else
becomes :class:`~conveyor.errors.BackendError`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
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
    """The server says so: the session was shut down before or while running the statement."""
    return (exc.sqlstate or "").startswith("57P")


def _connection_lost(exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))
    )


class Database:
    """A pool of connections and the one way the backend runs a statement.

    Args:
        pool: The pool (the backend's own, or the user's).
        owns_pool: Whether :meth:`close` closes it.
        timeout: Seconds to wait for a connection.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], owns_pool: bool, timeout: float) -> None:
        self.pool = pool
        self.owns_pool = owns_pool
        self.timeout = timeout

    async def open(self) -> None:
        """Open the pool when it is ours (``open=False`` then ``await pool.open()``)."""
        if self.owns_pool:
            try:
                await self.pool.open(wait=True, timeout=self.timeout)
            except psycopg.Error as exc:
                await self.pool.close()
                raise BackendError("postgres", f"cannot connect: {exc}", exc) from exc

    async def close(self) -> None:
        """Close the pool when it is ours."""
        if self.owns_pool:
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
    ) -> list[Row]:
        """Run one statement and return its rows (empty for a statement without any).

        Args:
            name: The query's name, for error messages.
            query: The SQL.
            params: Its parameters.
            idempotent: Whether running it twice is harmless, so that it may be retried
                when the connection died and it is unknown whether it ran.
            conflict_retries: How many times to run it again after a unique violation.

        Raises:
            BackendError: When it fails, or the server cannot be reached in time.
        """
        lost_retry = True
        while True:
            try:
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
                retry = _did_not_run(exc) or (idempotent and _connection_lost(exc))
                if not (lost_retry and retry):
                    raise _error(name, exc) from exc
                lost_retry = False

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
    cur = conn.cursor(row_factory=tuple_row)
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
