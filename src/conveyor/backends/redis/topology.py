"""Which server holds a queue: the one server, the Cluster master owning its slot, or the
master that Sentinel names.

Every key of a queue is in one Cluster slot (the hash tag of :mod:`keys`), so whatever the
deployment, a queue lives on one server at a time. The backend talks to that server through
a plain client of its own (its scripts, wake-ups, pub/sub and presence work as on a single
server); a :class:`Topology` says where that server is, and is asked again when the server
answers that it no longer holds the queue (``MOVED`` after a resharding, ``READONLY`` from a
demoted master) or stops answering (a failover).

URL forms (see :func:`parse`):

* ``redis+cluster://[[user]:password@]host:port[,host:port...][/][?options]``: any of the
  nodes serves to discover the cluster (``rediss+cluster://`` for TLS).
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?options]``:
  the sentinels' addresses and the monitored master's name; the credentials are the
  master's, ``sentinel_username`` / ``sentinel_password`` those of the sentinels
  (``rediss+sentinel://`` for TLS to the master).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from conveyor.backends.redis.notify import Backoff
from conveyor.errors import ConfigurationError

logger = logging.getLogger("conveyor.backends.redis")

#: Error replies that say the queue's slot is on its way to another node: the call did not
#: run, and runs once the migration is over (then the node answers ``MOVED``).
MIGRATING = (TryAgainError,)
#: Error replies after which the queue's server must be looked up again (the call did not
#: run): the slot moved, the master was demoted, the cluster lost a master.
MOVED = (MovedError, AskError, ReadOnlyError, ClusterDownError)


def elsewhere(reply: object) -> bool:
    """Whether an error reply says that the call did not run because the queue is not
    served there now: :data:`MOVED`, :data:`MIGRATING`, or ``NOREPLICAS`` (a master set
    with ``min-replicas-to-write`` that lost its replicas, as when Sentinel promoted one)."""
    if isinstance(reply, MOVED + MIGRATING):
        return True
    return isinstance(reply, ResponseError) and str(reply).startswith("NOREPLICAS")


#: Query options of a sentinel URL that configure the sentinels, not the master.
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


def _hosts(netloc: str, url: str) -> tuple[str, list[tuple[str, int]]]:
    """The user info (with its ``@``, or '') and the ``host:port`` list of a netloc."""
    userinfo, _, hosts = netloc.rpartition("@")
    nodes = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"{_safe(url)}: every address must be host:port (got {part!r})"
            )
        nodes.append((host.strip("[]"), int(port)))
    return (userinfo + "@" if userinfo else ""), nodes


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _safe(url: str) -> str:
    """A URL without its password, for error messages."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return parts._replace(netloc=f"{userinfo}{at}{hosts}").geturl()


class Topology:
    """Where the queue's server is, for a client that is not a single server's.

    Subclasses answer :meth:`locate`; :meth:`client` builds a plain client to the answer.
    """

    #: Shown by ``describe()``.
    kind = "single"

    def __init__(self, connection_kwargs: dict[str, Any], pool_kwargs: dict[str, Any]) -> None:
        self._connection_kwargs = connection_kwargs
        self._pool_kwargs = pool_kwargs
        #: The address of the server last located.
        self.address: tuple[str, int] | None = None

    async def locate(self, key: str, refresh: bool) -> tuple[str, int]:
        """The address of the server holding ``key`` (a key of the queue); ``refresh``
        asks the deployment again instead of trusting what is known."""
        raise NotImplementedError

    def client(self, address: tuple[str, int]) -> Redis:
        """A client of its own (a blocking pool) to the server at ``address``."""
        host, port = address
        kwargs = {**self._connection_kwargs, **self._pool_kwargs, "host": host, "port": port}
        return Redis.from_pool(BlockingConnectionPool(**kwargs))

    async def close(self) -> None:
        """Close what was opened to discover the deployment (not the clients made)."""


class ClusterTopology(Topology):
    """The master that owns the queue's slot in a Redis Cluster.

    Args:
        cluster: A ``redis.asyncio.cluster.RedisCluster`` (its nodes' connection settings
            are used for the clients made here).
        pool_kwargs: Options of the pools made (``max_connections``, ``timeout``).
        owns: Close ``cluster`` on :meth:`close`.
    """

    kind = "cluster"

    def __init__(self, cluster: Any, pool_kwargs: dict[str, Any], owns: bool = False) -> None:
        super().__init__({}, pool_kwargs)
        #: The ``RedisCluster`` that tells the layout.
        self.cluster = cluster
        self._owns = owns
        self._ready = False

    async def locate(self, key: str, refresh: bool) -> tuple[str, int]:
        """The master owning ``key``'s slot (``CLUSTER SLOTS`` read again on ``refresh``)."""
        cluster = self.cluster
        if not self._ready:
            await cluster.initialize()
            self._ready = True
        elif refresh:
            await cluster.nodes_manager.initialize()
        node = cluster.get_node_from_key(key)
        self._connection_kwargs = {"connection_class": node.connection_class}
        self._connection_kwargs.update(node.connection_kwargs)
        self.address = (node.host, int(node.port))
        return self.address

    async def masters(self) -> list[Redis]:
        """A client to every master of the cluster (for scans across queues); close them."""
        if not self._ready:
            await self.cluster.initialize()
            self._ready = True
        return [self.client((n.host, int(n.port))) for n in self.cluster.get_primaries()]

    async def close(self) -> None:
        if self._owns:
            self._ready = False  # read the layout again if used again
            with contextlib.suppress(Exception):
                await self.cluster.aclose()


class SentinelTopology(Topology):
    """The master that Sentinel names for a service.

    Once located, it listens to the sentinels' ``+switch-master`` announcements (on one
    sentinel at a time, the next when it fails) and calls :attr:`on_switch` when the
    service's master changes: clients still connected to the old master would otherwise
    go on writing there, and lose it, until the sentinels demote it (seconds later).

    Args:
        sentinel: A ``redis.asyncio.sentinel.Sentinel``.
        service: The monitored master's name.
        connection_kwargs: The master's connection settings (credentials, db, TLS ...).
        pool_kwargs: Options of the pools made (``max_connections``, ``timeout``).
    """

    kind = "sentinel"

    def __init__(
        self,
        sentinel: Any,
        service: str,
        connection_kwargs: dict[str, Any],
        pool_kwargs: dict[str, Any],
    ) -> None:
        super().__init__(connection_kwargs, pool_kwargs)
        self._sentinel = sentinel
        self.service = service
        #: Called when the sentinels announce a new master for the service.
        self.on_switch: Callable[[], None] | None = None
        self._watch: asyncio.Task[None] | None = None

    async def locate(self, key: str, refresh: bool) -> tuple[str, int]:
        """The master the sentinels agree on now (asked every time: that is cheap)."""
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._switches(), name="conveyor-sentinel-watch")
        host, port = await self._sentinel.discover_master(self.service)
        self.address = (str(host), int(port))
        return self.address

    async def _switches(self) -> None:
        backoff = Backoff()
        service = self.service.encode()
        while True:
            for client in self._sentinel.sentinels:
                pubsub = client.pubsub()
                try:
                    await pubsub.subscribe("+switch-master")
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=5
                        )
                        backoff.reset()
                        data = message and message.get("data")
                        ours = isinstance(data, bytes) and data.split(b" ")[0] == service
                        if ours and self.on_switch is not None:
                            self.on_switch()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.debug("sentinel watch: %s", exc)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            await asyncio.sleep(backoff.next())

    async def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch
        for client in self._sentinel.sentinels:
            with contextlib.suppress(Exception):
                await client.aclose()


def parse(url: str, pool_kwargs: dict[str, Any], **kwargs: Any) -> Topology:
    """The topology of a ``redis+cluster://`` or ``redis+sentinel://`` URL (module
    docstring); its query options go to redis-py like a ``redis://`` URL's.

    Args:
        url: The URL, without Conveyor's own options.
        pool_kwargs: Options of the pools made for the queue's server.
        **kwargs: Further connection options for redis-py.

    Raises:
        ConfigurationError: For a malformed URL.
    """
    from redis.asyncio.connection import parse_url

    parts = urlsplit(url)
    scheme, _, mode = parts.scheme.lower().partition("+")
    tls = scheme == "rediss"
    userinfo, nodes = _hosts(parts.netloc, url)
    base = "rediss" if tls else "redis"
    if mode == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        if parts.path.strip("/"):
            raise ConfigurationError(
                f"{_safe(url)}: a Redis Cluster has one database, so the URL takes no "
                "/db or other path"
            )
        first = f"{base}://{userinfo}{_netloc(*nodes[0])}"
        options: dict[str, Any] = dict(
            parse_url(first + (f"?{parts.query}" if parts.query else ""))
        )
        for name in ("connection_class", "db", "host", "port"):
            options.pop(name, None)
        options.update(kwargs)
        if tls:
            options["ssl"] = True
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes], **options
        )
        return ClusterTopology(cluster, pool_kwargs, owns=True)
    if mode == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        service, _, db = parts.path.strip("/").partition("/")
        if not service or (db and not db.isdigit()):
            raise ConfigurationError(
                f"{_safe(url)}: a Sentinel URL names the master's service after the "
                "addresses: redis+sentinel://host:port[,host:port]/service[/db]"
            )
        sentinel_kwargs: dict[str, Any] = {}
        rest = []
        for item in parts.query.split("&") if parts.query else []:
            name, _, value = item.partition("=")
            if name in _SENTINEL_OPTIONS:
                sentinel_kwargs[name.removeprefix("sentinel_")] = unquote(value)
            else:
                rest.append(item)
        query = "&".join(rest)
        master = f"{base}://{userinfo}{_netloc(*nodes[0])}/{db or 0}"
        options = dict(parse_url(master + (f"?{query}" if query else "")))
        options.pop("host", None)
        options.pop("port", None)
        options.update(kwargs)
        sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs or None)
        return SentinelTopology(sentinel, service, options, pool_kwargs)
    raise ConfigurationError(
        f"{_safe(url)}: unknown Redis deployment {mode!r}; use redis+cluster:// or "
        "redis+sentinel://"
    )
