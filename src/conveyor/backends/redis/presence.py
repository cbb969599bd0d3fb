"""Presence: telling a dead worker's leases from a live one's by its connection to Redis.

When the backend first claims for a worker id, it opens a connection of its own for that
worker, names it (``CLIENT SETNAME``, see :func:`client_name`) and records the server's
``run_id`` and the connection's ``CLIENT ID`` in the queue's ``presence`` hash. The
connection stays open, idle, for as long as the process lives; when the process dies, even
by ``SIGKILL``, its kernel closes the socket and the connection leaves ``CLIENT LIST``.

:meth:`Presence.dead_workers` names the workers whose recorded connection is gone from the
server it was recorded on, and the ``expire_dead`` script ends their leases, only if their
record is still the one that was found gone (a worker that registered again meanwhile is
alive). Anything that cannot prove a death proves nothing: a record from before a server
restart or failover (another ``run_id``), a worker without a record (an older version,
one whose ``CLIENT SETNAME`` was refused, or one claimed for with ``vouch=False``, as the
HTTP proxy claims for its remote workers), a server that closes idle connections by itself
(``timeout`` set), or ``CLIENT LIST`` refused by an ACL: such leases run out as before.

One case stays: a connection closed while its process lives (``CLIENT KILL``, a network
failure between that worker and Redis) reads as a death until the worker registers again
at its next claim or lease renewal. The fencing tokens keep that from costing more than
a second run of the job: the first owner's writes are refused and its next renewal tells
it the lease is lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.exceptions import NoPermissionError, RedisError

logger = logging.getLogger("conveyor.backends.redis")

#: Printable ASCII that a connection name may hold as it is (not space, not ``%``).
_NAME_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def client_name(base: str, worker_id: str) -> str:
    """The name of a worker's presence connection: the queue's key base and the worker id,
    percent-encoded where ``CLIENT SETNAME`` refuses a character (space, non-ASCII)."""
    return "conveyor-worker:" + quote(base + worker_id, safe=_NAME_SAFE)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Presence:
    """The presence connections of one backend, and the check of other workers' ones.

    The server that counts is the one holding the queue (on a Redis Cluster, the master
    of its slot; with Sentinel, the current master): :meth:`use` names it, and a worker
    registered on another one registers again at its next claim or renewal.

    Args:
        base: The queue's key base.
        key: The queue's ``presence`` hash.
    """

    def __init__(self, base: str, key: str) -> None:
        self._client: Any = None
        self._base = base
        self._key = key
        #: worker id -> its presence connection, and the server generation it was made on.
        self._own: dict[str, tuple[int, Redis]] = {}
        self._generation = 0
        self._refused = False

    def use(self, client: Any) -> None:
        """Register on and check ``client``'s server from now on (the backend's
        ``redis.asyncio.Redis``: its pool's address and credentials are used; with a pool
        of another kind nothing is registered)."""
        self._client = client
        self._generation += 1

    async def ensure(self, worker_id: str) -> None:
        """Register ``worker_id`` if it has no open presence connection yet (one round
        trip the first time, none after, unless the connection was closed). Never raises:
        a worker without presence is only recovered later, when its leases run out."""
        mine = self._own.get(worker_id)
        own = mine[1] if mine is not None else None
        if self._refused or (mine is not None and mine[0] == self._generation and _open(mine[1])):
            return
        try:
            await self._register(worker_id, own)
        except (RedisError, OSError) as exc:
            if _refused(exc):
                self._refused = True
            logger.debug("presence of worker %r not registered: %s", worker_id, exc)

    async def _register(self, worker_id: str, old: Redis | None) -> None:
        pool = self._client.connection_pool
        if type(pool) not in (ConnectionPool, BlockingConnectionPool):
            self._refused = True
            return
        if old is not None:
            await _close(old)
        kwargs = dict(pool.connection_kwargs)
        kwargs["client_name"] = client_name(self._base, worker_id)  # set at every connect
        # Registering never waits long for a server that does not answer.
        kwargs["socket_timeout"] = kwargs.get("socket_timeout") or 5.0
        kwargs["socket_connect_timeout"] = kwargs.get("socket_connect_timeout") or 5.0
        conn = Redis(
            connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs),
            single_connection_client=True,
        )
        self._own[worker_id] = (self._generation, conn)
        info = await conn.info("server")
        client_id = await conn.client_id()
        value = f"{info['run_id']} {client_id}"
        # Some redis-py releases (5.x, 7.0) type the asyncio client's hset as maybe not awaitable.
        await conn.hset(self._key, worker_id, value)  # type: ignore[misc,unused-ignore]

    async def forget(self, worker_id: str) -> None:
        """Close ``worker_id``'s presence connection and drop its record (a clean stop)."""
        mine = self._own.pop(worker_id, None)
        if mine is not None:
            with contextlib.suppress(Exception):
                await self._client.hdel(self._key, worker_id)
            await _close(mine[1])

    async def close(self) -> None:
        """Close every presence connection (their records stay: a worker that stops with
        leases left is as good as dead)."""
        own, self._own = self._own, {}
        for _, conn in own.values():
            await _close(conn)

    async def dead_workers(self) -> list[tuple[str, str]] | None:
        """The workers whose recorded connection is gone, with their records; None when
        that cannot be told here (``CLIENT LIST`` or ``CONFIG`` refused, or a server that
        closes idle connections itself). One round trip.

        Raises:
            RedisError: When the server fails.
        """
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command("CLIENT", "LIST", "TYPE", "normal")
        pipe.execute_command("INFO", "server")
        pipe.execute_command("CONFIG", "GET", "timeout")
        pipe.hgetall(self._key)
        listing, info, timeout, records = await pipe.execute(raise_on_error=False)
        for reply in (listing, info, timeout, records):
            if isinstance(reply, Exception):
                if _refused(reply):
                    return None
                raise reply
        if _idle_timeout(timeout) != 0:
            return None  # an idle presence connection may be closed by the server itself
        run_id = info["run_id"] if isinstance(info, dict) else _info_field(info, "run_id")
        alive = _client_ids(listing)
        dead = []
        for worker, record in records.items():
            recorded_run, _, client_id = _text(record).partition(" ")
            if recorded_run == run_id and client_id not in alive:
                dead.append((_text(worker), _text(record)))
        return dead


async def _close(client: Redis) -> None:
    """Close a presence client and its pool (a client given a pool leaves it open)."""
    with contextlib.suppress(Exception):
        await client.aclose()
    with contextlib.suppress(Exception):
        await client.connection_pool.disconnect()


def _refused(exc: BaseException) -> bool:
    """Whether an error says the command is refused here: an ACL, or renamed away."""
    return isinstance(exc, NoPermissionError) or "unknown command" in str(exc)


def _open(client: Redis) -> bool:
    conn = client.connection
    reader = getattr(conn, "_reader", None)
    writer = getattr(conn, "_writer", None)
    return (
        reader is not None
        and writer is not None
        and not reader.at_eof()
        and not writer.transport.is_closing()
    )


def _client_ids(listing: Any) -> set[str]:
    """The ids in a ``CLIENT LIST`` reply (text, or the list some redis-py versions make)."""
    if isinstance(listing, list):
        return {str(entry.get("id")) for entry in listing if isinstance(entry, dict)}
    ids = set()
    for line in _text(listing).splitlines():
        for field in line.split(" "):
            if field.startswith("id="):
                ids.add(field[3:])
                break
    return ids


def _idle_timeout(reply: Any) -> int:
    """The server's ``timeout`` from a ``CONFIG GET`` reply (a dict or a flat list)."""
    if isinstance(reply, dict):
        values: Sequence[Any] = list(reply.values())
    else:
        values = list(reply)[1::2]
    return int(_text(values[0])) if values else 0


def _info_field(info: Any, name: str) -> str:
    for line in _text(info).splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""
