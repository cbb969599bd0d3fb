"""What every library adapter provides, and helpers they share.

An adapter drives one library in two roles: as a client (enqueue jobs, clean up after
itself) in the driver process, and as a worker (the library's own worker class, running
the task bodies of :mod:`probe`) in the worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass
class Target:
    """Where and under which names one measurement runs.

    Attributes:
        token: A name unique to this measurement (``bench_<hex>``); every Redis key, queue,
            schema or file the measurement creates carries it, so cleanup deletes exactly
            what it made.
        redis_url: The Redis server.
        pg_dsn: A PostgreSQL database created for this benchmark run.
        workdir: A directory for files (SQLite databases).
    """

    token: str
    redis_url: str
    pg_dsn: str
    workdir: str


class Adapter:
    """One library (and backend). Subclasses set the class attributes and the methods."""

    #: The name in the tables.
    name = ""
    #: "redis" or "postgres".
    group = ""
    #: The distribution whose version the report prints.
    package = ""
    #: The library's bulk enqueue API, or "" when it has none.
    bulk_api = ""
    #: Settings that differ from the library's defaults, for the report.
    notes = ""

    def __init__(self, target: Target) -> None:
        self.target = target

    @classmethod
    def version(cls) -> str:
        return importlib.metadata.version(cls.package)

    @classmethod
    async def prepare_database(cls, dsn: str) -> None:
        """Create the library's fixed tables in a fresh database (PostgreSQL libraries)."""

    # Client side

    async def open(self) -> None:
        """Connect the client."""

    async def close(self) -> None:
        """Disconnect the client."""

    async def enqueue(self, kind: str, **kwargs: Any) -> None:
        """Enqueue one job running the task ``kind``."""
        raise NotImplementedError

    async def enqueue_bulk(self, kind: str, kwargs_list: Sequence[dict[str, Any]]) -> None:
        """Enqueue many jobs with the library's bulk API in one call."""
        raise NotImplementedError

    async def fill(self, kind: str, n: int) -> None:
        """Enqueue ``n`` jobs as fast as possible (not measured): the bulk API in chunks,
        else single enqueues, 50 at a time."""
        if self.bulk_api:
            for start in range(0, n, 1000):
                await self.enqueue_bulk(kind, [{}] * min(1000, n - start))
            return
        sem = asyncio.Semaphore(50)

        async def one() -> None:
            async with sem:
                await self.enqueue(kind)

        for start in range(0, n, 1000):
            await asyncio.gather(*(one() for _ in range(min(1000, n - start))))

    async def cleanup(self) -> None:
        """Delete every key, row, schema or file this measurement created."""

    # Worker side

    async def prepare_worker(self, concurrency: int) -> None:
        """Import the library and build its worker, running the probe's bodies (not
        timed: imports cost the same whatever the workload)."""
        raise NotImplementedError

    async def start_worker(self) -> None:
        """Start the prepared worker in the background (timed from here)."""
        raise NotImplementedError

    async def settle(self) -> None:
        """Called when the last job's body has returned: wait until its outcome is stored
        (for libraries that write outcomes behind)."""

    async def stop_worker(self) -> None:
        """Stop the worker and release its connections."""
        raise NotImplementedError


async def delete_redis_keys(url: str, pattern: str) -> int:
    """Delete the keys matching ``pattern`` (SCAN MATCH, then UNLINK in batches)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


async def cancel_quietly(task: asyncio.Task[Any] | None, timeout: float = 10.0) -> None:
    """Cancel ``task`` and wait for it, swallowing what it raises."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(task), timeout)
