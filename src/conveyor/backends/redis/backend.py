"""The Redis backend: every batch operation is one Lua script call (one round trip).

The key scheme is in :mod:`conveyor.backends.redis.keys`, the scripts in ``scripts/*.lua``.
A queue lives on one server: the one server, or on a Redis Cluster the master owning the
queue's slot, or with Sentinel the current master (see
:mod:`conveyor.backends.redis.topology`: the backend talks to that server through a client
of its own, and locates it again when it answers that the queue is elsewhere or stops
answering). Four kinds of connection are used: the client's pool for operations, a pool
without a socket timeout for ``BLPOP`` (``wait_for_work``), one pub/sub connection (the
``wait_for_finish`` listener), and one idle connection per worker id that claims here (its
presence, see :mod:`conveyor.backends.redis.presence`). The BLPOP and pub/sub connections
reconnect by themselves with backoff; a presence connection at the worker's next claim or
lease renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    MovedError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
from conveyor.backends.redis import codec
from conveyor.backends.redis.cancellation import cancel_requests, raise_if_cancel_lost
from conveyor.backends.redis.keys import KeyScheme
from conveyor.backends.redis.notify import Backoff, FinishListener
from conveyor.backends.redis.presence import Presence
from conveyor.backends.redis.scripts import Redirected, Scripts
from conveyor.backends.redis.topology import (
    ClusterTopology,
    SentinelTopology,
    Topology,
    elsewhere,
)
from conveyor.backends.redis.topology import parse as parse_topology
from conveyor.errors import BackendError, ConfigurationError

_ALL_STATUSES = ("queued", "active", "aborting", "complete", "failed", "aborted")
_RUN_FIELDS = (
    "key",
    "function",
    "attempt",
    "worker_id",
    "status",
    "started_ms",
    "finished_ms",
    "error",
    "detail",
)
#: ``list_runs`` checks filters that have no index over this many runs of the range at most.
RUN_SCAN_WINDOW = 10_000
#: ``claim`` moves at most this many due scheduled jobs to the ready set per call.
MOVE_BOUND = 1000
#: ``enqueue`` inserts at most this many jobs per script call.
ENQUEUE_CHUNK = 500
#: The connections of the pool that :meth:`RedisBackend.from_url` builds, unless the URL's
#: ``max_connections`` says otherwise (redis-py 8's default pool has 100 too).
MAX_CONNECTIONS = 100
#: Seconds a call waits for a free connection of the pool (``pool_timeout``).
POOL_TIMEOUT = 20.0
#: Seconds ``connect`` waits for a server loading its dataset (``loading_timeout``).
LOADING_TIMEOUT = 60.0
#: Seconds a call waits at most for the queue's slot to finish moving to another node
#: (``TRYAGAIN``), or for a newly located server to take the queue (``MOVED``, ``READONLY``
#: again), before it fails.
REDIRECT_TIMEOUT = 10.0
#: The URL query options that configure the backend, not redis-py.
_OPTIONS = ("prefix", "pool_timeout", "loading_timeout")
_DEFAULTS = {"pool_timeout": POOL_TIMEOUT, "loading_timeout": LOADING_TIMEOUT}


class RedisBackend:
    """A queue stored in Redis (5.0 or newer server; redis-py 5 to 8), on one server, a
    Redis Cluster (7.0 or newer) or a Sentinel-managed master.

    Args:
        redis: A ``redis.asyncio.Redis``, or a ``redis.asyncio.cluster.RedisCluster`` (the
            backend then talks to the master owning the queue's slot through a client of
            its own, made with the cluster's connection settings), built with
            ``decode_responses=False`` (the default).
        queue_name: The queue's name.
        prefix: The namespace of every key (``prefix:{queue}:...``).
        owns_client: Close ``redis`` on :meth:`disconnect` (set by :meth:`from_url`).
        pool_timeout: Seconds a call waits for a connection when every connection of the
            client's pool is in use (``max_connections``), before it fails with an error
            that says so. A ``BlockingConnectionPool`` (what :meth:`from_url` builds) waits
            by its own ``timeout``, which :meth:`from_url` sets to this.
        loading_timeout: Seconds :meth:`connect` waits for a server that is loading its
            dataset (after a restart) before it fails with an error that says so.
        topology: Where the queue's server is when ``redis`` is not it (set by
            :meth:`from_url` for ``redis+cluster://`` and ``redis+sentinel://`` URLs; ``redis``
            is then None).
        max_concurrent_ops: At most this many connections of the client's pool in use by
            the backend's operations at once (beside its own connection, and those of
            blocking waits, notifications and presence); None leaves the bound to the pool.

    Raises:
        ConfigurationError: When the client decodes responses, a name is unusable, or
            ``max_concurrent_ops`` is below 1.
    """

    name = "redis"
    # A queue's runs may not live in Redis when its jobs live elsewhere (yet): Redis's run
    # indexes order runs by their numeric ids.
    capabilities = Capabilities(cross_process=True, durable=True, run_store=False)

    def __init__(
        self,
        redis: Any,
        queue_name: str,
        prefix: str = "conveyor",
        *,
        owns_client: bool = False,
        pool_timeout: float = POOL_TIMEOUT,
        loading_timeout: float = LOADING_TIMEOUT,
        topology: Topology | None = None,
        max_concurrent_ops: int | None = None,
    ) -> None:
        kwargs = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", None)
        if kwargs is None:
            kwargs = getattr(redis, "connection_kwargs", None) or {}  # a RedisCluster's
        if kwargs.get("decode_responses"):
            raise ConfigurationError(
                "the Redis backend needs a client built with decode_responses=False"
            )
        if max_concurrent_ops is not None and max_concurrent_ops < 1:
            raise ConfigurationError(
                f"max_concurrent_ops must be at least 1, not {max_concurrent_ops!r}"
            )
        self.queue_name = queue_name
        self.keys = KeyScheme(prefix, queue_name)
        self._owns_client = owns_client
        self._pool_timeout = pool_timeout
        self._max_borrowed = max_concurrent_ops
        self._loading_timeout = loading_timeout
        if topology is None and _is_cluster(redis):
            pools = {"max_connections": MAX_CONNECTIONS, "timeout": pool_timeout}
            topology = ClusterTopology(redis, pools, owns=owns_client)
        self._topology = topology
        if isinstance(topology, SentinelTopology):
            topology.on_switch = self._switched
        sharded = isinstance(topology, ClusterTopology)
        self._script_args = self.keys.script_args(sharded)
        self._presence = Presence(self.keys.base, self.keys.key("presence"))
        self._blocking: Any = None
        self._listener = FinishListener(self.keys.channel, sharded=sharded)
        self._wait_backoff = Backoff()
        self._pop: asyncio.Task[bool] | None = None
        self._connected = False
        self._redis: Any = None
        self._scripts: Scripts
        #: With a topology: the queue's server must be located (again) before the next call.
        self._stale = topology is not None
        self._address: tuple[str, int] | None = None
        self._locating = asyncio.Lock()
        if topology is None:
            self._use(redis)

    def _use(self, client: Any) -> None:
        """Talk to the queue's server through ``client`` from now on."""
        self._redis = client
        self._scripts = Scripts(
            client,
            self.keys.fixed_keys,
            self._script_args,
            pool_timeout=self._pool_timeout,
            max_borrowed=self._max_borrowed,
        )
        self._presence.use(client)
        self._listener.use(client)

    @classmethod
    def from_url(cls, url: str, queue_name: str, **kwargs: Any) -> RedisBackend:
        """A backend for a ``redis://``, ``rediss://`` or ``unix://`` URL, a Redis Cluster
        (``redis+cluster://host:port[,host:port...]``) or a Sentinel-managed master
        (``redis+sentinel://host:port[,host:port...]/service[/db]``; see
        :mod:`conveyor.backends.redis.topology`).

        Args:
            url: The server URL. The query options ``prefix`` (default ``conveyor``),
                ``pool_timeout`` and ``loading_timeout`` (seconds; see the class) are taken
                out; the rest goes to redis-py (``max_connections``, ``socket_timeout``,
                ``db`` ...).
            queue_name: The queue's name.
            **kwargs: ``redis`` (a client to use instead of building one; left open on
                :meth:`disconnect` unless ``owns_client`` is given true), ``prefix``,
                ``pool_timeout``, ``loading_timeout``, ``max_concurrent_ops``; anything
                else goes to redis-py's
                ``BlockingConnectionPool.from_url``: the client built here waits up to
                ``pool_timeout`` for a connection when all ``max_connections`` (default
                :data:`MAX_CONNECTIONS`) are in use, where redis-py's default pool fails.

        Raises:
            ConfigurationError: When a timeout option is not a number of seconds.
        """
        query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
        options = {name: kwargs.pop(name, None) for name in _OPTIONS}
        for name, value in query:
            if name in _OPTIONS:
                options[name] = value
        timeouts: dict[str, Any] = {
            name: _seconds(name, options[name]) for name in _OPTIONS if name != "prefix"
        }
        rest = urlencode([(k, v) for k, v in query if k not in _OPTIONS])
        # Everything before the query, kept as written: a rebuilt unix:///path becomes
        # unix:/path, which redis-py 8 refuses.
        address = re.split(r"[?#]", url, maxsplit=1)[0]
        client = kwargs.pop("redis", None)
        owns = bool(kwargs.pop("owns_client", client is None))
        max_ops = kwargs.pop("max_concurrent_ops", None)
        prefix = options["prefix"] or "conveyor"
        deployment = urlsplit(url).scheme.lower().partition("+")[2]
        if client is None and deployment:  # redis+cluster, redis+sentinel
            pools = {
                "max_connections": int(kwargs.pop("max_connections", 0) or _max_connections(query)),
                "timeout": timeouts["pool_timeout"],
            }
            topology = parse_topology(address + (f"?{rest}" if rest else ""), pools, **kwargs)
            return cls(
                None,
                queue_name,
                prefix,
                owns_client=True,
                topology=topology,
                max_concurrent_ops=max_ops,
                **timeouts,
            )
        if client is None:
            kwargs.setdefault("decode_responses", False)
            kwargs.setdefault("max_connections", MAX_CONNECTIONS)
            kwargs.setdefault("timeout", timeouts["pool_timeout"])
            address += f"?{rest}" if rest else ""
            client = Redis.from_pool(BlockingConnectionPool.from_url(address, **kwargs))
        return cls(
            client, queue_name, prefix, owns_client=owns, max_concurrent_ops=max_ops, **timeouts
        )

    @property
    def client(self) -> Any:
        """The client the backend was given: a ``redis.asyncio.Redis`` (the one the
        operations use), or a ``RedisCluster``; with Sentinel, the client to the current
        master (None until located)."""
        if isinstance(self._topology, ClusterTopology):
            return self._topology.cluster
        return self._redis

    @contextlib.asynccontextmanager
    async def _errors(self, operation: str) -> AsyncIterator[None]:
        if self._stale:
            await self._relocate(operation)
        before = cancel_requests()
        try:
            yield
        except (RedisError, OSError) as exc:
            raise await self._failure(operation, exc) from exc
        raise_if_cancel_lost(before)

    async def _failure(self, operation: str, exc: Exception) -> BackendError:
        """The error to raise; after a connection error, idle pooled connections are closed
        too, since they died with the same server (they reconnect on their next use). With
        a topology, such an error, or an answer that the queue is elsewhere, has the
        server located again before the next call."""
        lost = isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)
        if lost:
            with contextlib.suppress(Exception):
                await self._redis.connection_pool.disconnect(inuse_connections=False)
        if self._topology is not None and (lost or _redirect(exc) is not None):
            self._stale = True
        return BackendError(self.name, f"{operation} failed: {exc}", exc)

    def _switched(self) -> None:
        """The sentinels announced a new master: locate it before the next call."""
        self._stale = True

    async def _relocate(self, operation: str) -> None:
        """Locate the queue's server (Cluster, Sentinel) and talk to it from now on; the
        connections to the one before are closed when idle.

        Raises:
            BackendError: When the deployment cannot tell.
        """
        topology = self._topology
        if topology is None:
            return
        async with self._locating:
            if not self._stale:
                return  # another call located it meanwhile
            before = cancel_requests()
            try:
                address = await topology.locate(self.keys.key("ready"), self._redis is not None)
            except (RedisError, RedisClusterException, OSError) as exc:
                raise BackendError(
                    self.name,
                    f"{operation} failed: the {topology.kind} could not tell which Redis "
                    f"server holds queue {self.queue_name!r}: {exc}",
                    exc,
                ) from exc
            raise_if_cancel_lost(before)
            self._stale = False
            if self._redis is not None and address == self._address:
                return
            old, scripts, blocking = self._redis, getattr(self, "_scripts", None), self._blocking
            self._address = address
            self._use(topology.client(address))
            pop, self._pop = self._pop, None
            if pop is not None:
                pop.cancel()  # a BLPOP on the server before: no token comes there any more
            if blocking is not None:
                self._blocking = _blocking_client(self._redis)
            await _close_idle(old, scripts, blocking)

    async def connect(self) -> None:
        """Load the scripts (one round trip) and open the blocking pool. Idempotent.

        A server still loading its dataset (``LOADING``, after a restart) is asked again
        with backoff for up to ``loading_timeout`` seconds.

        Raises:
            BackendError: When the server cannot be reached, or was still loading at the
                end of ``loading_timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._loading_timeout
        backoff = Backoff(first=0.05, most=1.0)
        while True:
            try:
                async with self._errors("connect"):
                    await self._scripts.load()
                break
            except BackendError as exc:
                retry = isinstance(exc.__cause__, BusyLoadingError)
                if self._topology is not None and _redirect(exc.__cause__) is not None:
                    retry = True  # a failover or resharding in progress
                if not retry:
                    raise
                left = deadline - loop.time()
                if left <= 0:
                    raise BackendError(
                        self.name,
                        f"connect failed: the Redis server was still loading its dataset "
                        f"after {self._loading_timeout:g} s (loading_timeout); raise "
                        "loading_timeout (a URL option) to wait longer",
                        exc.__cause__,
                    ) from exc.__cause__
                await asyncio.sleep(min(backoff.next(), left))
        if self._blocking is None:
            self._blocking = _blocking_client(self._redis)
        self._connected = True

    async def disconnect(self) -> None:
        """Stop the listener and close the connections this backend opened. Idempotent."""
        self._connected = False
        await self._listener.close()
        await self._presence.close()
        pop, self._pop = self._pop, None
        if pop is not None:
            pop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pop
        blocking, self._blocking = self._blocking, None
        if blocking is not None and blocking is not self._redis:
            with contextlib.suppress(Exception):
                await _aclose(blocking)
            with contextlib.suppress(Exception):
                # A client given a pool does not close it: its BLPOP connection would
                # stay open (a ResourceWarning when collected).
                await blocking.connection_pool.disconnect()
        with contextlib.suppress(Exception):
            await self._scripts.lines.close()
        if self._topology is not None:
            # The clients to the queue's server are the backend's own; located anew at the
            # next call.
            if self._redis is not None:
                with contextlib.suppress(Exception):
                    await _aclose(self._redis)
                    await self._redis.connection_pool.disconnect()
            self._redis, self._address, self._stale = None, None, True
            await self._topology.close()
        elif self._owns_client:
            with contextlib.suppress(Exception):
                await _aclose(self._redis)

    def describe(self) -> dict[str, Any]:
        """The engine, the address (without password), the prefix and the queue; with a
        Cluster or Sentinel, the deployment and the server holding the queue (``None``
        until located)."""
        pool = getattr(self._redis, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {})
        address = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        info = {
            "engine": "redis",
            "address": address if pool is not None else None,
            "db": kwargs.get("db", 0),
            "prefix": self.keys.prefix,
            "queue": self.queue_name,
        }
        if self._topology is not None:
            info["deployment"] = self._topology.kind
        return info

    async def record_runs(self, starts: Sequence[RunRecord], ends: Sequence[RunEnd]) -> None:
        """Not available: see ``capabilities.run_store``.

        Raises:
            ConfigurationError: Always.
        """
        raise ConfigurationError(
            "the Redis backend cannot keep another store's runs; use SQLite or PostgreSQL "
            "as the runs_url"
        )

    async def drop(self) -> None:
        """Delete every key under this backend's prefix (every queue sharing it).

        Raises:
            BackendError: When the server fails.
        """
        async with self._errors("drop"):
            if isinstance(self._topology, ClusterTopology):
                # The prefix's queues are spread over the masters; a command's keys must
                # share a slot.
                for client in await self._topology.masters():
                    try:
                        await _unlink_matching(client, self.keys.everything_pattern(), True)
                    finally:
                        await _aclose(client)
                        await client.connection_pool.disconnect()
            else:
                await _unlink_matching(self._redis, self.keys.everything_pattern(), False)

    async def _run(self, operation: str, args: Sequence[Any]) -> Any:
        if self._stale:
            await self._relocate(operation)
        body = b""
        try:
            body = self._scripts.pack(args)
            return await self._scripts.call_one(operation, body, len(args))
        except (RedisError, OSError) as exc:
            return await self._run_again(operation, body, len(args), exc)

    async def _run_again(self, operation: str, body: bytes, count: int, exc: Exception) -> Any:
        """A script call whose frame failed with ``exc``, sent again to the queue's server
        while ``exc`` says that it did not run there (see :meth:`_follow`).

        Raises:
            BackendError: When it failed otherwise, or the redirections went on too long.
        """
        deadline = None
        while True:
            deadline = await self._follow(operation, exc, deadline)
            try:
                return await self._scripts.call_one(operation, body, count)
            except (RedisError, OSError) as error:
                exc = error

    async def _follow(self, operation: str, exc: Exception, deadline: float | None) -> float:
        """After a call was answered that the queue is not served here (Cluster:
        ``MOVED``, ``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN``; Sentinel: ``READONLY``,
        ``NOREPLICAS``; see :func:`~conveyor.backends.redis.topology.elsewhere`): wait a
        little unless it is a first ``MOVED``, then locate the queue's server again (not
        for ``ASK`` and ``TRYAGAIN``: the slot is on its way, and the node that owns it
        answers until it has moved).

        Returns:
            The deadline of these attempts (:data:`REDIRECT_TIMEOUT` from the first).

        Raises:
            BackendError: For any other error, without a topology, or past the deadline.
        """
        away = _redirect(exc)
        if self._topology is None or away is None:
            raise await self._failure(operation, exc) from exc
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + REDIRECT_TIMEOUT
            wait = 0.0 if isinstance(away, MovedError) else 0.02
        elif loop.time() >= deadline:
            raise await self._failure(operation, exc) from exc
        else:
            wait = 0.05
        await asyncio.sleep(wait)
        if isinstance(away, MovedError) or not isinstance(away, AskError | TryAgainError):
            self._stale = True  # not a slot being migrated: the queue is elsewhere
            await self._relocate(operation)
        return deadline

    async def _call(self, operation: str, frames: Iterable[tuple[bytes, int]]) -> list[Any]:
        if self._stale:
            await self._relocate(operation)
        before = cancel_requests()
        try:
            replies = await self._scripts.call(operation, frames)
        except Redirected as exc:
            replies = await self._call_again(operation, exc)
        except (RedisError, OSError) as exc:
            raise await self._failure(operation, exc) from exc
        raise_if_cancel_lost(before)
        return replies

    async def _call_again(self, operation: str, redirected: Redirected) -> list[Any]:
        """The replies of a pipelined call some of whose frames did not run (see
        :meth:`_follow`): those are sent again, the others' replies kept.

        Raises:
            BackendError: As :meth:`_follow`, or for the first error reply.
        """
        replies, missing, frames = redirected.replies, redirected.missing, redirected.frames
        exc: Exception = redirected
        deadline = None
        while missing:
            deadline = await self._follow(operation, exc, deadline)
            try:
                again = await self._scripts.call(operation, [frames[i] for i in missing])
            except Redirected as more:
                for j, reply in enumerate(more.replies):
                    replies[missing[j]] = reply
                missing, exc = [missing[j] for j in more.missing], more
                continue
            except (RedisError, OSError) as error:
                raise await self._failure(operation, error) from error
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
            missing = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise await self._failure(operation, reply) from reply
        return replies

    # Jobs

    async def enqueue(self, jobs: Sequence[NewJob]) -> list[bool]:
        """Insert jobs; see :meth:`conveyor.backends.base.Backend.enqueue`.

        Up to :data:`ENQUEUE_CHUNK` jobs go in one script call, so a large batch never
        holds the server for long; the calls are pipelined, each written while the next
        is packed.
        """
        if len(jobs) == 1:  # queue.enqueue(...): _run without its extra await
            if self._stale:
                await self._relocate("enqueue")
            scripts = self._scripts
            body = b""
            try:
                body = _now_argument() + _pack_job(jobs[0], scripts)
                [flag] = await scripts.call_one("enqueue", body, 9)
            except (RedisError, OSError) as exc:
                [flag] = await self._run_again("enqueue", body, 9, exc)
            return [bool(flag)]
        if not jobs:
            return []
        replies = await self._call("enqueue", self._enqueue_frames(jobs))
        return [bool(flag) for reply in replies for flag in reply]

    def _enqueue_frames(self, jobs: Sequence[NewJob]) -> Iterator[tuple[bytes, int]]:
        scripts = self._scripts
        for i in range(0, len(jobs), ENQUEUE_CHUNK):
            part = jobs[i : i + ENQUEUE_CHUNK]
            packed = [_now_argument()]
            packed += [_pack_job(job, scripts) for job in part]
            yield b"".join(packed), 1 + 8 * len(part)

    async def claim(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Claim jobs; see :meth:`conveyor.backends.base.Backend.claim`.

        The run id serves as the fencing token (see ``claim.lua``).
        """
        if limit <= 0:
            return []
        if self._stale:
            await self._relocate("claim")
        if vouch:
            await self._presence.ensure(worker_id)
        now_ms = int(now * 1000)
        reply = await self._run(
            "claim", [worker_id, limit, repr(now + lease_s), repr(now), now_ms, MOVE_BOUND]
        )
        text = codec.text
        rows = []
        for i in range(0, len(reply), 4):
            run_id = text(reply[i + 3])
            rows.append(
                JobRow(
                    key=text(reply[i]),
                    payload=reply[i + 1],
                    status="active",
                    attempts=int(reply[i + 2]),
                    started_ms=now_ms,
                    touched_ms=now_ms,
                    worker_id=worker_id,
                    run_id=run_id,
                    token=run_id,
                )
            )
        return rows

    async def wait_for_work(self, timeout: float) -> None:
        """Block on the wake-up list until an enqueue, the next due time or ``timeout``.

        One ``BLPOP`` per backend is in flight at a time, shared by every caller and left
        running when a caller is cancelled or times out (the next call picks it up), so
        that cancelling a wait neither loses a token nor drops the connection.

        Never raises for a lost connection: it waits out a backoff delay (at most
        ``timeout``) instead, so that the caller's next operation reports the error.
        """
        pop = self._pop
        if pop is not None and pop.done():
            self._pop = None
            if not pop.cancelled() and pop.exception() is None and pop.result():
                return  # a token arrived while nobody was waiting
        try:
            async with self._errors("wait_for_work"):
                first = await self._redis.zrange(self.keys.key("scheduled"), 0, 0, withscores=True)
        except BackendError:
            await asyncio.sleep(max(0.0, min(timeout, self._wait_backoff.next())))
            return
        if first:
            timeout = min(timeout, float(first[0][1]) - time.time())
        if timeout <= 0:
            return
        if self._pop is None:
            self._pop = asyncio.create_task(self._blpop(timeout), name="conveyor-redis-blpop")
        pop = self._pop
        await asyncio.wait({pop}, timeout=timeout)
        if not pop.done():
            return
        self._pop = None
        if pop.cancelled() or pop.exception() is None:
            self._wait_backoff.reset()
            return
        delay = self._wait_backoff.next()
        await asyncio.sleep(max(0.0, min(delay, timeout)))

    async def _blpop(self, timeout: float) -> bool:
        client = self._blocking or self._redis
        # BLPOP rounds to ms and 0 means forever: never ask for less than 10 ms.
        reply = await client.blpop([self.keys.key("wake")], timeout=max(timeout, 0.01))
        return reply is not None

    async def renew(
        self,
        worker_id: str,
        leases: Sequence[Lease],
        lease_s: float,
        now: float,
        *,
        vouch: bool = True,
    ) -> Renewal:
        """Renew the leases still held under their tokens, in one script call; see the
        protocol."""
        if not leases:
            return Renewal()
        if self._stale:
            await self._relocate("renew")
        if vouch:
            await self._presence.ensure(worker_id)  # registers again if its connection closed
        args: list[Any] = [repr(now + lease_s), int(now * 1000)]
        for lease in leases:
            args += (lease.key, lease.token)
        aborting, lost = await self._run("renew", args)
        text = codec.text
        return Renewal(aborting=[text(key) for key in aborting], lost=[text(key) for key in lost])

    async def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        """Apply transitions in one script call, each checked against its fencing token;
        see the protocol."""
        if not transitions:
            return []
        reply = await self._run("finish", [repr(time.time()), 0, *_finish_args(transitions)])
        return [bool(flag) for flag in reply]

    async def finish_with_logs(
        self, transitions: Sequence[Transition], rows: Sequence[LogRow]
    ) -> list[bool]:
        """Store log lines and apply transitions in one script call (atomic); see
        :class:`~conveyor.backends.base.FinishesWithLogs`. The lines are stored whether or
        not the transitions are applied."""
        argument = codec.log_argument
        logs = [argument(*row) for row in rows]
        reply = await self._run(
            "finish", [repr(time.time()), len(logs), *logs, *_finish_args(transitions)]
        )
        return [bool(flag) for flag in reply]

    async def update(self, key: str, payload: Payload, token: str | None = None) -> bool:
        """Store a payload (with ``token``: only while held under it) and announce the
        change; see the protocol."""
        reply = await self._run("update", [key, payload, int(time.time() * 1000), token or ""])
        return bool(reply)

    async def abort(self, key: str, payload: Payload, now: float) -> str | None:
        """Abort a job; see the protocol."""
        return codec.optional(await self._run("abort", [key, payload]))

    async def expire_dead_leases(self, now: float) -> int:
        """End at once the unexpired leases of workers whose process is gone, so that the
        next :meth:`recover` takes their jobs over without waiting for the leases to run out.

        A worker is gone when the connection that the backend of its process opened for it
        at its first claim (see :mod:`conveyor.backends.redis.presence`) is no longer
        connected to the server it registered on. A lease whose owner may be alive (no such
        record, a record from before a server restart, a server that closes idle
        connections, ``CLIENT LIST`` refused by an ACL) is never ended. Two round trips; the
        script reads every unexpired lease of the queue when some worker was found dead.

        Returns:
            How many leases were ended (0 when nothing could be told).

        Raises:
            BackendError: When the server fails.
        """
        async with self._errors("expire_dead_leases"):
            dead = await self._presence.dead_workers()
        if not dead:
            return 0
        args: list[Any] = [repr(now)]
        for worker_id, record in dead:
            args += (worker_id, record)
        return int(await self._run("expire_dead", args))

    async def recover(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """Take over expired leases; see the protocol."""
        reply = await self._run("recover", [worker_id, limit, repr(now + lease_s), repr(now)])
        return codec.recovered_rows(reply, worker_id)

    async def get(self, keys: Sequence[str]) -> list[JobRow | None]:
        """Load jobs; see the protocol."""
        if not keys:
            return []
        self._listener.note_read(keys)
        reply = await self._run("get", list(keys))
        n = codec.JOB_FIELDS
        return [
            codec.job_row(key, reply[i * n : i * n + n]) if reply[i * n] else None
            for i, key in enumerate(keys)
        ]

    async def list_jobs(
        self, statuses: Sequence[str] | None, offset: int, limit: int
    ) -> list[JobRow]:
        """List jobs, newest first; see the protocol."""
        wanted = list(_ALL_STATUSES if statuses is None else statuses)
        if limit <= 0 or not wanted:
            return []
        reply = await self._run("list_jobs", [max(offset, 0), limit, *wanted])
        return codec.job_rows_with_keys(reply)

    async def count(self, statuses: Sequence[str]) -> dict[str, int]:
        """Count jobs by status; see the protocol."""
        if not statuses:
            return {}
        reply = await self._run("count", [repr(time.time()), *statuses])
        return {status: int(n) for status, n in zip(statuses, reply, strict=True)}

    async def wait_for_finish(self, keys: Sequence[str], timeout: float) -> None:
        """Wait for an announcement of one of ``keys``; see the protocol."""
        await self._listener.wait(keys, timeout)

    async def expire(self, now: float, limit: int) -> int:
        """Delete expired finished jobs and clean the indexes; see the protocol."""
        return int(await self._run("expire", [int(now * 1000), limit]))

    # Workers

    async def put_worker(self, worker_id: str, info: Payload, ttl_s: float) -> None:
        """Store a worker record; see the protocol."""
        now_ms = int(time.time() * 1000)
        await self._run("put_worker", [worker_id, info, now_ms + int(ttl_s * 1000), now_ms])

    async def delete_worker(self, worker_id: str) -> None:
        """Remove a worker record, and its presence (see :meth:`expire_dead_leases`)."""
        await self._presence.forget(worker_id)
        async with self._errors("delete_worker"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self.keys.key("workers"), worker_id)
            pipe.zrem(self.keys.key("worker_ttl"), worker_id)
            await pipe.execute()

    async def workers(self) -> dict[str, Payload]:
        """Live worker records."""
        reply = await self._run("workers", [int(time.time() * 1000)])
        return {codec.text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}

    # Runs and logs

    async def list_runs(
        self, filters: RunFilter, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """List runs, newest first, with the total.

        The most selective filter picks the index (job key, then status, then function,
        else every run) and ``since_ms``/``until_ms`` its score range; the total is exact
        for those. Any other filter (``error_contains``, or a second of key/status/function)
        is checked run by run over the newest :data:`RUN_SCAN_WINDOW` runs of that range.
        """
        f = filters
        args: list[Any] = [
            "-inf" if f.since_ms is None else f.since_ms,
            "+inf" if f.until_ms is None else f"({f.until_ms}",
            max(offset, 0),
            max(limit, 0),
            RUN_SCAN_WINDOW,
        ]
        if f.key is not None:
            index, extra = self.keys.runs_by_job(f.key), (f.status, f.function, None)
        elif f.status is not None:
            index, extra = self.keys.runs_by_status(f.status), (None, f.function, None)
        elif f.function is not None:
            index, extra = self.keys.runs_by_function(f.function), (None, None, None)
        else:
            index, extra = self.keys.key("runs"), (None, None, None)
        needle = (f.error_contains or "").lower()
        args += [value or "" for value in extra]
        args.append(needle)
        reply = await self._run("list_runs", [index, *args])
        return codec.run_records(reply[2:]), int(reply[0])

    async def get_run(self, run_id: str) -> RunRecord | None:
        """One run."""
        async with self._errors("get_run"):
            values = await self._redis.hmget(self.keys.run(run_id), _RUN_FIELDS)
        return codec.run_record(run_id, values)

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        """Store log lines of any number of runs in one script call."""
        if not lines:
            return
        argument = codec.log_argument
        await self._run(
            "append_logs",
            [
                argument(line.run_id, line.seq, line.ts, line.level, line.message, line.extra)
                for line in lines
            ],
        )

    async def read_logs(self, run_id: str, after_seq: int, limit: int) -> list[LogLine]:
        """A run's lines after a cursor."""
        if limit <= 0:
            return []
        async with self._errors("read_logs"):
            members = await self._redis.zrangebyscore(
                self.keys.logs(run_id), f"({after_seq}", "+inf", start=0, num=limit
            )
        return [codec.unpack_log(run_id, member) for member in members]

    async def purge_runs(self, before_ms: int, limit: int) -> int:
        """Delete old finished runs, their logs and index entries."""
        return int(await self._run("purge_runs", [before_ms, limit]))


def _finish_args(transitions: Sequence[Transition]) -> list[Any]:
    """The 12 script arguments of each transition (see ``finish.lua``)."""
    args: list[Any] = []
    for t in transitions:
        run = t.run
        args += (
            t.key,
            t.payload,
            t.status,
            repr(float(t.due)),
            int(t.expire_at * 1000) if t.expire_at is not None and not t.delete else "",
            "1" if t.delete else "",
            run.run_id if run else "",
            run.status if run else "",
            run.finished_ms if run else 0,
            run.detail if run else b"",
            (run.error or "") if run else "",
            t.token or "",
        )
    return args


def _now_argument() -> bytes:
    """The time now (epoch s) as a packed script argument: ``enqueue.lua`` sorts jobs due
    now by it."""
    now = repr(time.time()).encode()
    return b"$%d\r\n%b\r\n" % (len(now), now)


#: One job's 8 script arguments as RESP bulk strings, to be formatted in one step.
_JOB_BODY = b"$%d\r\n%b\r\n" * 8


def _pack_job(job: NewJob, scripts: Scripts) -> bytes:
    """The 8 script arguments of one job (see ``enqueue.lua``), packed for a call.

    The usual job (text key and name, an int priority, no once mark, a UTF-8 client) is
    formatted in one step: about 5 us less per awaited enqueue than :func:`_job_args`
    through the general packing, which takes every other shape (and rejects what
    redis-py would reject, a bool priority say).
    """
    key, function, payload, priority = job.key, job.function, job.payload, job.priority
    if type(payload) is str:
        payload = payload.encode()
    if (
        not scripts.plain_utf8
        or job.once
        or type(priority) is not int
        or type(payload) is not bytes
        or type(key) is not str
        or type(function) is not str
    ):
        return scripts.pack(_job_args(job))
    k, f = key.encode(), function.encode()
    p, d = b"%d" % priority, repr(float(job.due)).encode()
    g = job.group_key.encode() if job.group_key else b""
    return _JOB_BODY % (
        *(len(k), k, len(f), f, len(payload), payload, len(p), p),
        *(len(d), d, len(g), g, 0, b"", 1, b"0"),
    )


def _job_args(job: NewJob) -> tuple[Any, ...]:
    """The 8 script arguments of one job (see ``enqueue.lua``)."""
    return (
        job.key,
        job.function,
        job.payload,
        job.priority,
        repr(float(job.due)),
        job.group_key or "",
        job.once or "",
        math.ceil(job.once_ttl * 1000) if job.once else 0,
    )


def _max_connections(query: list[tuple[str, str]]) -> int:
    """The pool size a URL asks for (its ``max_connections``), else the default."""
    for name, value in query:
        if name == "max_connections" and value.isdigit():
            return int(value)
    return MAX_CONNECTIONS


def _is_cluster(client: Any) -> bool:
    """Whether ``client`` is a ``redis.asyncio.cluster.RedisCluster``."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _seconds(name: str, value: Any) -> float:
    """A timeout option's value (a URL's text, or a number) in seconds."""
    if value is None:
        return _DEFAULTS[name]
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds >= 0:
        raise ConfigurationError(f"Redis option {name}={value!r} must be a number of seconds")
    return seconds


def _blocking_client(client: Any) -> Any:
    """A client on its own pool without a socket timeout, for BLPOP; or ``client`` itself
    when its pool is of a kind that cannot be copied (Sentinel, custom pools)."""
    pool = client.connection_pool
    if type(pool) not in (ConnectionPool, BlockingConnectionPool):
        return client
    kwargs = dict(pool.connection_kwargs)
    kwargs["socket_timeout"] = None
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


def _redirect(exc: BaseException | None) -> Exception | None:
    """The error reply in ``exc`` saying that the queue is not served where the call went
    (the call did not run), or None."""
    if isinstance(exc, Redirected):
        return exc.replies[exc.missing[0]]  # type: ignore[no-any-return]
    return exc if isinstance(exc, Exception) and elsewhere(exc) else None


async def _unlink_matching(client: Any, pattern: str, by_slot: bool) -> None:
    """Delete the keys matching ``pattern`` on one server, a thousand at a time (on a
    Cluster node, one command per slot)."""
    from redis.crc import key_slot

    batch: list[bytes] = []

    async def flush() -> None:
        if not by_slot:
            await client.unlink(*batch)
        else:
            slots: dict[int, list[bytes]] = {}
            for key in batch:
                slots.setdefault(key_slot(key), []).append(key)
            for keys in slots.values():
                await client.unlink(*keys)
        batch.clear()

    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await flush()
    if batch:
        await flush()


async def _close_idle(client: Any, scripts: Scripts | None, blocking: Any) -> None:
    """Close the connections to a server the queue left, except those in use (a call in
    flight there fails or is redirected by itself)."""
    with contextlib.suppress(Exception):
        if scripts is not None and not scripts.lines.busy:
            await scripts.lines.close()
    for each in (blocking, client):
        if each is not None:
            with contextlib.suppress(Exception):
                await each.connection_pool.disconnect(inuse_connections=False)


async def _aclose(client: Any) -> None:
    closer = getattr(client, "aclose", None) or client.close
    await closer()
