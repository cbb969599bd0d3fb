"""The Lua scripts of the Redis backend, read from ``scripts/*.lua``.

Each script is the shared prelude ``_common.lua`` followed by its own file, and receives the
queue's fixed keys as ``KEYS`` and its key prefixes as the first ``ARGV`` (see
:mod:`conveyor.backends.redis.keys`). Scripts are registered with redis-py's
``register_script``: they run by ``EVALSHA`` and are loaded again after a ``NOSCRIPT`` reply
(a server restart or ``SCRIPT FLUSH``).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

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


@functools.cache
def source(name: str) -> str:
    """The full text of script ``name``: the prelude, then the script's own file."""
    folder = resources.files("conveyor.backends.redis") / "scripts"
    prelude = (folder / "_common.lua").read_text(encoding="utf-8")
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    return prelude + "\n" + body


class Scripts:
    """The registered scripts of one client, called with one queue's keys and prefixes.

    Args:
        client: The ``redis.asyncio.Redis`` the scripts run on.
        keys: The fixed keys (``KEYS``).
        prefixes: The key prefixes (first ``ARGV``).
    """

    def __init__(self, client: Any, keys: tuple[str, ...], prefixes: tuple[str, ...]) -> None:
        self._client = client
        self._keys = keys
        self._prefixes = prefixes
        self._scripts = {name: client.register_script(source(name)) for name in NAMES}

    async def load(self) -> None:
        """Load every script on the server in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for script in self._scripts.values():
            pipe.script_load(script.script)
        await pipe.execute()

    async def run(self, name: str, args: list[Any]) -> Any:
        """Run script ``name`` with the queue's keys and prefixes, then ``args``."""
        return await self._scripts[name](keys=self._keys, args=[*self._prefixes, *args])
