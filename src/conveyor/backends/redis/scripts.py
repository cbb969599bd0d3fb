"""The Lua scripts of the Redis backend, read from ``scripts/*.lua``, and how they are called.

Every script receives the queue's fixed keys as ``KEYS`` and its key base as the first
``ARGV`` (see :mod:`conveyor.backends.redis.keys`); ``_setup.lua`` names them and
``_common.lua`` holds the helpers that scripts share. They reach the server in one of two
forms, chosen when they are loaded:

- On Redis 7 and newer, one function library (``FUNCTION LOAD``) called by ``FCALL``. Its
  helpers are made once at load instead of at every call, and the names built from a key
  base are kept per queue: about 5 us less server time per call than the same script by
  ``EVALSHA``. The library's name carries a digest of its text, so two Conveyor versions
  sharing a server each keep their own.
- Elsewhere (Redis 6, or a user whose ACL refuses ``FUNCTION``), each script by ``EVALSHA``.

Calls are frames packed by :mod:`conveyor.backends.redis.wire`. When the server no longer
knows the scripts (``NOSCRIPT``, ``Function not found``: a restart without persistence, a
flush, a failover to an older server), they are loaded again, the form chosen again, and the
call repeated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, RedisError, ResponseError

from conveyor.backends.redis.cancellation import cancel_requests, raise_if_cancel_lost
from conveyor.backends.redis.topology import elsewhere
from conveyor.backends.redis.wire import Line, Lines, pack

NAMES = (
    "abort",
    "append_logs",
    "claim",
    "count",
    "enqueue",
    "expire",
    "expire_dead",
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

#: The names that ``_setup.lua`` assigns.
_SETUP_NAMES = "K, B, P, A"

#: How many queues' names the function library keeps at most (then it starts over).
_KEPT_BASES = 256


def _texts() -> tuple[str, str, dict[str, str]]:
    folder = resources.files("conveyor.backends.redis") / "scripts"

    def text(name: str) -> str:
        return (folder / f"{name}.lua").read_text(encoding="utf-8")

    return text("_setup"), text("_common"), {name: text(name) for name in NAMES}


def sources() -> dict[str, str]:
    """The full text of every script for ``EVAL``: the setup, the helpers, its own file.

    Read when needed (at connect, after a ``NOSCRIPT``) and not kept: an idle worker does
    not hold some 80 KB of Lua.
    """
    setup, common, bodies = _texts()
    prelude = f"local {_SETUP_NAMES}\n{setup}\n{common}\n"
    return {name: prelude + body for name, body in bodies.items()}


def library() -> tuple[str, str]:
    """The function library of every script, and its name.

    Each script's file becomes the body of a function that first points ``KEYS``,
    ``ARGV`` and the setup's names at its call (the setup runs once per key base). The
    name is a digest of the whole text.
    """
    setup, common, bodies = _texts()
    parts = [
        f"local KEYS, ARGV, {_SETUP_NAMES}",
        "local bases, kept = {}, 0",
        common,
        "local function enter(keys, args)",
        "  KEYS, ARGV = keys, args",
        "  local known = bases[args[1]]",
        "  if known then",
        f"    {_SETUP_NAMES} = unpack(known)",
        "    return",
        "  end",
        setup,
        f"  if kept >= {_KEPT_BASES} then bases, kept = {{}}, 0 end",
        f"  bases[args[1]] = {{ {_SETUP_NAMES} }}",
        "  kept = kept + 1",
        "end",
    ]
    for script, body in bodies.items():
        parts += [
            f"redis.register_function('@_{script}', function(keys, args)",
            "enter(keys, args)",
            body,
            "end)",
        ]
    text = "\n".join(parts)  # its functions named '@_<script>' until the digest is known
    name = f"conveyor_{hashlib.sha1(text.encode()).hexdigest()[:16]}"
    named = text.replace("redis.register_function('@_", f"redis.register_function('{name}_")
    return f"#!lua name={name}\n{named}", name


class Redirected(RedisError):
    """Some frames of a pipelined :meth:`Scripts.call` were not run: the server answered
    that the queue's slot is elsewhere or moving (a Redis Cluster), or that it is no
    longer a master. The others ran; the caller sends the missing ones again.

    Args:
        replies: Every reply, in order (the missing ones are their error replies).
        missing: The indexes of the frames that were not run.
        frames: The frames as sent (packed arguments, count).
    """

    def __init__(
        self, replies: list[Any], missing: list[int], frames: list[tuple[bytes, int]]
    ) -> None:
        super().__init__(str(replies[missing[0]]))
        self.replies = replies
        self.missing = missing
        self.frames = frames


def _unknown(reply: Any) -> bool:
    """Whether an error reply says the server does not know the called script."""
    if isinstance(reply, NoScriptError):
        return True
    return isinstance(reply, ResponseError) and str(reply).startswith(
        ("Function not found", "unknown command")
    )


class Scripts:
    """The scripts of one queue: packed calls with its keys and key base.

    Args:
        client: The ``redis.asyncio.Redis`` whose pool the calls use.
        keys: The fixed keys (``KEYS``).
        arguments: The key base and the announcing command (the first ``ARGV``, see
            :meth:`~conveyor.backends.redis.keys.KeyScheme.script_args`).
        pool_timeout: Seconds a call waits for a connection of a full pool.
        max_borrowed: At most this many of the pool's connections at once (see
            :class:`~conveyor.backends.redis.wire.Lines`).
    """

    def __init__(
        self,
        client: Any,
        keys: tuple[str, ...],
        arguments: tuple[str, ...],
        *,
        pool_timeout: float = 20.0,
        max_borrowed: int | None = None,
    ) -> None:
        self._client = client
        self.lines = Lines(client.connection_pool, pool_timeout, max_borrowed)
        #: Whether text is sent as ``str.encode()`` does (UTF-8, strict): packers may
        #: then encode it themselves.
        self.plain_utf8 = (
            self.lines.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
            and self.lines.errors == "strict"
        )
        self._fixed_args = (len(keys), *keys, *arguments)
        self._fixed = 2 + len(self._fixed_args)
        self._heads: dict[str, bytes] = {}
        #: Whether calls go to the function library (else to scripts by EVALSHA).
        self.functions = True
        self._use(library()[1])  # until loading says otherwise

    def _use(self, name: str | None) -> None:
        # The start of each script's frames: FCALL and its function in library ``name``,
        # or (None) EVALSHA and its sha; then the fixed keys and the key base.
        if name:
            calls = {script: f"{name}_{script}" for script in NAMES}
        else:
            calls = {script: _sha(text) for script, text in sources().items()}
        self.functions = name is not None
        command = "FCALL" if name else "EVALSHA"
        encoding, errors = self.lines.encoding, self.lines.errors
        self._heads = {
            script: pack([command, call, *self._fixed_args], encoding, errors)
            for script, call in calls.items()
        }

    async def load(self) -> None:
        """Load the function library, or where the server refuses it (Redis 6, an ACL),
        every script for EVALSHA; calls then go to what was loaded.

        Raises:
            RedisError: When neither can be loaded.
        """
        text, name = library()
        try:
            await self._client.function_load(text)
        except ResponseError as exc:
            if not str(exc).startswith(f"Library '{name}' already exists"):
                pipe = self._client.pipeline(transaction=False)
                for script in sources().values():
                    pipe.script_load(script)
                await pipe.execute()
                self._use(None)
                return
        self._use(name)

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
            if not _unknown(reply):
                raise reply
            await self.load()
            [reply] = await self.call(name, ((body, count),))
        return reply

    async def call(self, name: str, bodies: Iterable[tuple[bytes, int]]) -> list[Any]:
        """Run script ``name`` once per ``(packed arguments, count)``, pipelined: each
        frame is written as soon as it is packed, the replies are read at the end.

        Raises:
            Redirected: When some frames were not run because the queue's slot is
                elsewhere (their error replies are in it).
            RedisError: A connection error, a timeout, or the first error reply (after
                every reply was read).
        """
        lines = self.lines
        line = await lines.acquire()
        try:
            sent = []
            for body, count in bodies:
                line.write(b"*%d\r\n%b%b" % (self._fixed + count, self._heads[name], body))
                sent.append((body, count))
                await line.flush()
                lines.extend()
            replies = await _read(line, lines, len(sent))
            missing = [i for i, reply in enumerate(replies) if _unknown(reply)]
            if missing:
                await self.load()  # which may change the heads: frames are made again
                for i in missing:
                    body, count = sent[i]
                    line.write(b"*%d\r\n%b%b" % (self._fixed + count, self._heads[name], body))
                await line.flush()
                for i, reply in zip(missing, await _read(line, lines, len(missing)), strict=True):
                    replies[i] = reply
        except BaseException as exc:
            failure = await lines.discard(line, exc)
            if failure is exc:
                raise
            raise failure from exc
        await lines.release(line)
        away = [i for i, reply in enumerate(replies) if elsewhere(reply)]
        if away:
            raise Redirected(replies, away, sent)
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
