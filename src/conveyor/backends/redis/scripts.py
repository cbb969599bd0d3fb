"""The Lua scripts of the Redis backend, read from ``scripts/*.lua``, and how they are called.

Each script is the shared prelude ``_common.lua`` followed by its own file, and receives the
queue's fixed keys as ``KEYS`` and its key base as the first ``ARGV`` (see
:mod:`conveyor.backends.redis.keys`). Scripts run by ``EVALSHA`` in frames packed by
:mod:`conveyor.backends.redis.wire`; they are loaded at connect and loaded again after a
``NOSCRIPT`` reply (a server restart or ``SCRIPT FLUSH``), and the call is repeated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from conveyor.backends.redis.cancellation import cancel_requests, raise_if_cancel_lost
from conveyor.backends.redis.wire import Line, Lines, pack

NAMES = (
    "abort",
    "append_logs",
    "claim",
    "count",
    "enqueue",
    "expire",
    "finish",
    "get",
    "list_jobs",
    "list_runs",
    "purge_runs",
    "put_worker",
    "recover",
    "renew",
    "update",
    "workers",
)


def sources() -> dict[str, str]:
    """The full text of every script: the prelude, then the script's own file.

    Read when needed (at connect, after a ``NOSCRIPT``) and not kept: an idle worker does
    not hold some 80 KB of Lua.
    """
    folder = resources.files("conveyor.backends.redis") / "scripts"
    prelude = (folder / "_common.lua").read_text(encoding="utf-8")
    return {
        name: prelude + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")
        for name in NAMES
    }


class Scripts:
    """The scripts of one queue: packed calls with its keys and key base.

    Args:
        client: The ``redis.asyncio.Redis`` whose pool the calls use.
        keys: The fixed keys (``KEYS``).
        prefixes: The key base (first ``ARGV``).
    """

    def __init__(self, client: Any, keys: tuple[str, ...], prefixes: tuple[str, ...]) -> None:
        self._client = client
        self.lines = Lines(client.connection_pool)
        #: Whether text is sent as ``str.encode()`` does (UTF-8, strict): packers may
        #: then encode it themselves.
        self.plain_utf8 = (
            self.lines.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
            and self.lines.errors == "strict"
        )
        fixed = (len(keys), *keys, *prefixes)
        self._fixed = 2 + len(fixed)
        self._heads = {
            name: pack(["EVALSHA", _sha(text), *fixed], self.lines.encoding, self.lines.errors)
            for name, text in sources().items()
        }

    async def load(self) -> None:
        """Load every script on the server in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for text in sources().values():
            pipe.script_load(text)
        await pipe.execute()

    def pack(self, args: Iterable[Any]) -> bytes:
        """Script arguments packed for :meth:`call` (a frame's body)."""
        return pack(args, self.lines.encoding, self.lines.errors)

    async def call_one(self, name: str, body: bytes, count: int) -> Any:
        """Run script ``name`` once with the packed arguments ``body`` (``count`` of
        them): :meth:`call` for one frame, doing the least on the way when the own
        connection is free (no pipeline bookkeeping; a frame is sent whole before its
        reply can come, so there is no back pressure to wait for).

        Raises:
            RedisError: As :meth:`call` (an error reply is raised).
        """
        lines = self.lines
        line = lines.take_own()
        if line is None:
            # Borrowed connections go through redis-py (its wait_for may swallow a
            # cancellation: see cancellation.py).
            before = cancel_requests()
            [reply] = await self.call(name, ((body, count),))
            raise_if_cancel_lost(before)
            return reply
        try:
            line.write(b"*%d\r\n%b%b" % (self._fixed + count, self._heads[name], body))
            reply = await line.read()
        except BaseException as exc:
            failure = await lines.discard(line, exc)
            if failure is exc:
                raise
            raise failure from exc
        lines.give_back(line)
        if isinstance(reply, ResponseError):
            if not isinstance(reply, NoScriptError):
                raise reply
            await self.load()
            [reply] = await self.call(name, ((body, count),))
        return reply

    async def call(self, name: str, bodies: Iterable[tuple[bytes, int]]) -> list[Any]:
        """Run script ``name`` once per ``(packed arguments, count)``, pipelined: each
        frame is written as soon as it is packed, the replies are read at the end.

        Raises:
            RedisError: A connection error, a timeout, or the first error reply (after
                every reply was read).
        """
        lines = self.lines
        line = await lines.acquire()
        try:
            head = self._heads[name]
            frames = []
            for body, count in bodies:
                frame = b"*%d\r\n%b%b" % (self._fixed + count, head, body)
                line.write(frame)
                frames.append(frame)
                await line.flush()
                lines.extend()
            replies = await _read(line, lines, len(frames))
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                await self.load()
                for i in missing:
                    line.write(frames[i])
                await line.flush()
                for i, reply in zip(missing, await _read(line, lines, len(missing)), strict=True):
                    replies[i] = reply
        except BaseException as exc:
            failure = await lines.discard(line, exc)
            if failure is exc:
                raise
            raise failure from exc
        await lines.release(line)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies


async def _read(line: Line, lines: Lines, count: int) -> list[Any]:
    replies = []
    for _ in range(count):
        replies.append(await line.read())
        lines.extend()
    return replies


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()
