"""Script calls packed by hand and sent on a connection of the backend's own.

A call through redis-py spends most of its client time outside the network: every argument
goes through its encoder, the connection comes from the pool (a lock and a readiness check),
and with a socket timeout (redis-py 8 sets 5 s by default) the command is sent inside
``asyncio.wait_for``, which starts a task. Here a script call is one RESP frame built from
bytes packed once per script (``EVALSHA``, the sha, the queue's ``KEYS`` and key base) and
the call's own arguments, written on a dedicated connection that the backend keeps
(:class:`Lines`). When that connection is busy (concurrent calls), a connection is borrowed
from the client's pool and the same frame is sent through redis-py's public connection API.

Several frames can be written before the first reply is read (a pipeline): the server runs
the first while the client packs the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Iterable
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class PoolTimeoutError(RedisError):
    """No connection of the client's pool became free in time: every one of its
    ``max_connections`` was in use. Not a connection error: the server is fine."""


def pack(values: Iterable[Any], encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Values as consecutive RESP bulk strings (the arguments of a command, without its
    ``*N`` header). Types as redis-py's encoder takes them: bytes, str, int and float.

    Raises:
        DataError: For any other type (bool included, as in redis-py).
    """
    parts = []
    for value in values:
        kind = type(value)
        if kind is bytes:
            data = value
        elif kind is str:
            data = value.encode(encoding, errors)
        elif kind is int:
            data = b"%d" % value
        else:
            data = _other(value, encoding, errors)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _other(value: Any, encoding: str, errors: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, bool):
        raise DataError("Invalid input of type: 'bool'. Convert to a bytes, string, int or float")
    if isinstance(value, int | float):
        return repr(value).encode()
    if isinstance(value, str):
        return value.encode(encoding, errors)
    raise DataError(f"Invalid input of type: {type(value).__name__!r}")


#: The most one socket read takes. asyncio reads up to 256 KiB at a time: a buffer above
#: glibc's threshold for mapping memory (128 KiB until a larger block is freed), so in many
#: processes every read maps 256 KiB, shrinks it to the reply and unmaps it: three system
#: calls and some 40 us per call measured here. Below the threshold, reads come from the
#: heap; a larger reply takes a few reads.
READ_SIZE = 64 * 1024


def _read_small(transport: Any) -> None:
    """Cap a transport's reads at :data:`READ_SIZE` (asyncio's own transports; others,
    uvloop's say, are left as they are)."""
    if isinstance(getattr(transport, "max_size", None), int):
        with contextlib.suppress(AttributeError):
            transport.max_size = READ_SIZE


class Line:
    """One connection, used by one caller at a time: write frames, then read the replies.

    Error replies are returned as values (``ResponseError`` instances), so that every reply
    of a pipeline is read and the connection stays in step.
    """

    __slots__ = ("_direct", "_pending", "conn")

    def __init__(self, conn: Any, direct: bool) -> None:
        self.conn = conn
        self._direct = direct
        self._pending: list[bytes] = []

    def write(self, frame: bytes) -> None:
        """Send a frame (a borrowed connection sends it on :meth:`flush`)."""
        if self._direct:
            self.conn._writer.write(frame)
        else:
            self._pending.append(frame)

    async def flush(self) -> None:
        """Wait until the written frames are handed to the socket (back pressure)."""
        if self._direct:
            await self.conn._writer.drain()
        elif self._pending:
            frames, self._pending = self._pending, []
            await self.conn.send_packed_command(frames, check_health=False)

    async def read(self) -> Any:
        """The next reply; an error reply is returned, not raised."""
        if self._direct:
            return await self.conn._parser.read_response()
        try:
            return await self.conn.read_response()
        except ResponseError as exc:
            return exc


class Lines:
    """The backend's own connection for script calls, and the pool's when it is busy.

    The own connection is made by the client's pool (same address, credentials, TLS and
    protocol) but is not tracked by it; :meth:`close` closes it. It is used only when the
    pool is redis-py's ``ConnectionPool`` or ``BlockingConnectionPool`` and its connections
    have the stream attributes read here (redis-py 5 to 8); otherwise every call borrows.

    A call that fails in any way (an error, a timeout, a cancellation) leaves its
    connection closed: the server may still send the reply of a frame already written.

    Args:
        pool: The client's connection pool.
        pool_timeout: Seconds a call waits for a connection when none is free.
        max_borrowed: At most this many of the pool's connections in use at once (SAQ's
            ``max_concurrent_ops``); None for the pool's own bound only.
    """

    def __init__(
        self, pool: Any, pool_timeout: float = 20.0, max_borrowed: int | None = None
    ) -> None:
        self._pool = pool
        self._pool_timeout = pool_timeout
        self._max_borrowed = max_borrowed
        self._borrowed = 0
        #: Set (and replaced) whenever a borrowed connection goes back to the pool.
        self._freed = asyncio.Event()
        # redis-py before 5.3 requires a command name (unused), 8 warns when given one.
        parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
        self._get_args = ("EVALSHA",) if parameter and parameter.default is parameter.empty else ()
        self._own: Line | None = None
        self._busy = False
        self._timeout: float | None = None
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.timed_out = False
        if type(pool) in (ConnectionPool, BlockingConnectionPool):
            conn = pool.make_connection()
            if all(hasattr(conn, name) for name in ("_writer", "_reader", "_parser")):
                self._own = Line(conn, direct=True)
                timeout = getattr(conn, "socket_timeout", None)
                self._timeout = float(timeout) if timeout else None
        encoder = getattr(self._own.conn if self._own else None, "encoder", None)
        self.encoding: str = getattr(encoder, "encoding", "utf-8")
        self.errors: str = getattr(encoder, "encoding_errors", "strict")

    async def acquire(self) -> Line:
        """A connected line for one call; give it back with :meth:`release` or
        :meth:`discard`.

        Raises:
            RedisError: When no connection can be made.
        """
        ready = self.take_own()
        if ready is not None:
            return ready
        own = self._own
        if own is None or self._busy:
            conn = await self._borrow()
            _read_small(getattr(getattr(conn, "_writer", None), "transport", None))
            return Line(conn, direct=False)
        # The server closed it while it was idle (a restart), or it never connected.
        self._busy = True
        self.timed_out = False
        try:
            conn = own.conn
            if conn._writer is not None:
                await conn.disconnect(nowait=True)
            await conn.connect()
            _read_small(conn._writer.transport)
        except BaseException:
            self._busy = False
            raise
        self.extend()
        return own

    async def _borrow(self) -> Any:
        """A connection of the pool; when all of them are in use, one that another call
        gives back within ``pool_timeout`` (a ``BlockingConnectionPool`` waits by itself;
        redis-py's plain pool fails at once, so this waits for it).

        Raises:
            PoolTimeoutError: When none became free in time.
            RedisError: When no connection can be made.
        """
        pool = self._pool
        deadline: float | None = None
        while True:
            freed = self._freed
            if self._max_borrowed is not None and self._borrowed >= self._max_borrowed:
                exc, waited = None, False
                limit, knob = f"max_concurrent_ops={self._max_borrowed}", "max_concurrent_ops"
            else:
                self._borrowed += 1  # taken before the await: concurrent calls count it
                try:
                    conn = await pool.get_connection(*self._get_args)
                except BaseException as error:
                    self._borrowed -= 1
                    if not isinstance(error, RedisConnectionError):
                        raise
                    # A blocking pool's wait ran out (not a connect that failed):
                    exc = error
                    waited = isinstance(exc.__cause__, TimeoutError) and "No connection" in str(exc)
                    if not waited and "Too many connections" not in str(exc):
                        raise
                    limit = f"max_connections={getattr(pool, 'max_connections', '?')}"
                    knob = "max_connections (a URL option)"
                else:
                    return conn
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self._pool_timeout
            left = deadline - loop.time()
            if waited or left <= 0:
                timeout = getattr(pool, "timeout", None) if waited else self._pool_timeout
                raise PoolTimeoutError(
                    f"no connection of the Redis pool became free within {timeout} s: all "
                    f"{limit} were in use; raise {knob}, or pool_timeout to wait longer"
                ) from exc
            # Given back by another call of this backend, or by anyone (checked now and then).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(freed.wait(), min(left, 0.05))

    @property
    def busy(self) -> bool:
        """Whether the own connection is in use by a call."""
        return self._busy

    def take_own(self) -> Line | None:
        """The own line for one call if it is free and connected, else None (then
        :meth:`acquire`); give it back with :meth:`give_back` or :meth:`discard`."""
        own = self._own
        if own is None or self._busy:
            return None
        conn = own.conn
        writer = conn._writer
        if writer is None or writer.transport.is_closing() or conn._reader.at_eof():
            return None
        self._busy = True
        self.timed_out = False
        self.extend()
        return own

    def give_back(self, line: Line) -> None:
        """Give back the own line after its replies were all read."""
        if line is self._own:
            self._busy = False

    def extend(self) -> None:
        """Push the own line's deadline ``socket_timeout`` ahead (progress was made)."""
        if self._timeout is None:
            return
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self._timeout
        if self._watchdog is None:
            self._watchdog = loop.call_at(self._deadline, self._check, loop)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        # One timer serves many calls: it re-arms itself while a call is in flight and
        # closes the socket when that call is late (the read then fails).
        self._watchdog = None
        if not self._busy or self._own is None:
            return
        if loop.time() < self._deadline:
            self._watchdog = loop.call_at(self._deadline, self._check, loop)
            return
        writer = self._own.conn._writer
        if writer is not None:
            self.timed_out = True
            writer.transport.abort()

    async def release(self, line: Line) -> None:
        """Give back a line whose replies were all read."""
        if line is self._own:
            self._busy = False
        else:
            self._borrowed -= 1
            await self._pool.release(line.conn)
            freed, self._freed = self._freed, asyncio.Event()
            freed.set()

    async def discard(self, line: Line, exc: BaseException) -> BaseException:
        """Close a line's connection after a call failed with ``exc`` (its state is
        unknown) and give it back.

        Returns:
            The error to raise: ``exc``, or a timeout when the watchdog closed the socket.
        """
        try:
            await line.conn.disconnect(nowait=True)
        finally:
            await self.release(line)
        if line is self._own and self.timed_out and isinstance(exc, RedisConnectionError | OSError):
            return RedisTimeoutError(f"Timeout reading from Redis after {self._timeout} s")
        return exc

    async def close(self) -> None:
        """Close the own connection (it reconnects if used again)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._own is not None:
            await self._own.conn.disconnect()
