"""Notifications: the pub/sub listener behind ``wait_for_finish``, and reconnect backoff.

One :class:`FinishListener` per backend holds one pub/sub connection, subscribed to the
queue's ``finished`` channel (a sharded channel on a Redis Cluster, on the node of the
queue's slot), and wakes every local waiter whose keys a message names. It reconnects by
itself with backoff; while it is down, waiters fall back to their timeout.

A message may arrive between a caller's read of a job and its call to ``wait``. To not lose
it, :meth:`FinishListener.note_read` records the listener's message count when a read is
issued; ``wait`` returns at once when one of its keys was announced after its last read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from conveyor.backends.redis.cancellation import cancel_requests, raise_if_cancel_lost

logger = logging.getLogger("conveyor.backends.redis")

#: How many keys the listener remembers (last announcement, last read) at most.
_MEMORY = 10_000


class Backoff:
    """Exponential delays between reconnection attempts.

    Args:
        first: The first delay in seconds.
        most: The longest delay.
    """

    def __init__(self, first: float = 0.05, most: float = 2.0) -> None:
        self._first = first
        self._most = most
        self._next = first

    def next(self) -> float:
        """The delay before the next attempt (doubling each time)."""
        delay = self._next
        self._next = min(self._next * 2, self._most)
        return delay

    def reset(self) -> None:
        """Back to the first delay after a success."""
        self._next = self._first


class _Waiter:
    __slots__ = ("event", "keys")

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys
        self.event = asyncio.Event()


class FinishListener:
    """Listens to a channel of changed job keys and wakes the matching waiters.

    Args:
        channel: The channel name.
        sharded: Subscribe with ``SSUBSCRIBE`` (the scripts announce with ``SPUBLISH``).
    """

    def __init__(self, channel: str, sharded: bool = False) -> None:
        self._client: Any = None
        self._channel = channel
        self._sharded = sharded
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._by_key: dict[str, set[_Waiter]] = {}
        self._count = 0
        self._announced: dict[str, int] = {}
        self._read_at: dict[str, int] = {}

    def use(self, client: Any) -> None:
        """Subscribe with ``client`` (a ``redis.asyncio.Redis``) from now on: at once
        when listening already (the queue's server changed)."""
        self._client = client
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            self._subscribed.clear()
            self._task = asyncio.create_task(self._run(), name="conveyor-redis-listener")

    @property
    def running(self) -> bool:
        """Whether the listener task is alive."""
        return self._task is not None and not self._task.done()

    def note_read(self, keys: Iterable[str]) -> None:
        """Remember that the caller is about to read ``keys`` (see the module docstring)."""
        if self._task is None:
            return
        for key in keys:
            self._read_at.pop(key, None)
            self._read_at[key] = self._count
        _trim(self._read_at)

    async def wait(self, keys: Sequence[str], timeout: float) -> None:
        """Return when one of ``keys`` is announced, or after ``timeout`` seconds."""
        before = cancel_requests()
        try:
            await self._wait(keys, timeout)
        finally:
            raise_if_cancel_lost(before)

    async def _wait(self, keys: Sequence[str], timeout: float) -> None:
        if self._task is None:
            # First use: subscribe, then return, since a change may have come before.
            self._task = asyncio.create_task(self._run(), name="conveyor-redis-listener")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), timeout)
            return
        for key in keys:
            if self._announced.get(key, -1) > self._read_at.get(key, self._count):
                return
        waiter = _Waiter(frozenset(keys))
        for key in waiter.keys:
            self._by_key.setdefault(key, set()).add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.event.wait(), timeout)
        finally:
            for key in waiter.keys:
                waiters = self._by_key.get(key)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._by_key[key]

    async def close(self) -> None:
        """Stop listening."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._subscribed.clear()
        self._wake_all()

    def _wake_all(self) -> None:
        for waiters in self._by_key.values():
            for waiter in waiters:
                waiter.event.set()

    def _announce(self, data: Any) -> None:
        try:
            keys = json.loads(data)
        except ValueError:
            self._wake_all()
            return
        if not isinstance(keys, list):
            keys = []  # cjson encodes an empty array as an object
        self._count += 1
        for key in keys:
            if not isinstance(key, str):
                continue
            self._announced.pop(key, None)
            self._announced[key] = self._count
            for waiter in self._by_key.get(key, ()):
                waiter.event.set()
        _trim(self._announced)

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            pubsub = self._client.pubsub()
            try:
                if not self._sharded:
                    await pubsub.subscribe(self._channel)
                elif hasattr(pubsub, "ssubscribe"):
                    await pubsub.ssubscribe(self._channel)
                else:
                    await _close(pubsub)
                    pubsub = _Sharded(self._client)
                    await pubsub.subscribe(self._channel)
                while True:
                    raise_if_cancel_lost(0)  # see conveyor.backends.redis.cancellation
                    message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=5)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "sunsubscribe":
                        # The server dropped the subscription: the slot left its node.
                        raise ConnectionError("the queue's slot moved to another node")
                    if kind in ("subscribe", "ssubscribe"):
                        backoff.reset()
                        self._subscribed.set()
                        # Messages may have been missed while (re)subscribing.
                        self._wake_all()
                    elif kind in ("message", "smessage"):
                        self._announce(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                self._wake_all()
                delay = backoff.next()
                logger.warning(
                    "redis listener lost its connection (%s); retry in %.2fs", exc, delay
                )
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await _close(pubsub)


class _Sharded:
    """A subscription to a sharded channel on a connection of its own, with the part of
    ``PubSub``'s interface that the listener uses, for redis-py before 8.0, whose asyncio
    ``PubSub`` has no ``ssubscribe`` (RESP2 replies: redis-py 8 may speak RESP3, whose
    messages its own ``PubSub`` reads)."""

    def __init__(self, client: Any) -> None:
        self._conn = client.connection_pool.make_connection()

    async def subscribe(self, channel: str) -> None:
        await self._conn.connect()
        await self._conn.send_command("SSUBSCRIBE", channel)

    async def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float = 5.0
    ) -> dict[str, Any] | None:
        reply = await self._conn.read_response(timeout=timeout)
        if not isinstance(reply, list) or len(reply) < 3:
            return None
        kind = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return {"type": kind, "channel": reply[1], "data": reply[2]}

    async def aclose(self) -> None:
        await self._conn.disconnect()


async def _close(pubsub: Any) -> None:
    closer = getattr(pubsub, "aclose", None) or pubsub.close
    await closer()


def _trim(memory: dict[str, int]) -> None:
    excess = len(memory) - _MEMORY
    if excess > 0:
        for key in list(memory)[:excess]:
            del memory[key]
