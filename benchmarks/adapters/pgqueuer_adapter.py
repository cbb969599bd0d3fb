"""PgQueuer (PostgreSQL) with its asyncpg driver. Its tables have fixed names, so it runs in
the benchmark's own database; entrypoint names carry the measurement's token.

Not its psycopg driver: in pgqueuer 1.6 that driver's NOTIFY watcher holds the connection in
``notifies(timeout=1.0)``, so every wake-up waits up to a second for the connection (pickup
p50 of ~1,000 ms measured here); asyncpg is its primary driver.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import probe

from adapters.base import Adapter, cancel_quietly


def _batch_size(concurrency: int) -> int:
    # Its default batch is 10, and max_concurrent_tasks must be at least twice the batch.
    return max(1, min(10, concurrency // 2))


class PgQueuer(Adapter):
    name = "pgqueuer"
    group = "postgres"
    package = "pgqueuer"
    bulk_api = "Queries.enqueue(lists)"
    notes = "asyncpg driver; batch_size=min(10, c/2), max_concurrent_tasks=c"

    @classmethod
    async def prepare_database(cls, dsn: str) -> None:
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries

        conn = await asyncpg.connect(dsn)
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    async def _connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.target.pg_dsn)

    def _entrypoint(self, kind: str) -> str:
        return f"{kind}_{self.target.token}"

    async def open(self) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        self.conn = await self._connect()
        self.queries = Queries(AsyncpgDriver(self.conn))

    async def close(self) -> None:
        await self.conn.close()

    async def enqueue(self, kind: str, **kwargs: Any) -> None:
        payload = json.dumps(kwargs).encode() if kwargs else None
        await self.queries.enqueue(self._entrypoint(kind), payload)

    async def enqueue_bulk(self, kind: str, kwargs_list: Any) -> None:
        n = len(kwargs_list)
        payloads = [json.dumps(kw).encode() if kw else None for kw in kwargs_list]
        await self.queries.enqueue([self._entrypoint(kind)] * n, payloads, [0] * n)

    async def prepare_worker(self, concurrency: int) -> None:
        from pgqueuer import AsyncpgDriver
        from pgqueuer import PgQueuer as App

        self.worker_conn = await self._connect()
        self.app = App(AsyncpgDriver(self.worker_conn))
        for kind, body in probe.BODIES.items():
            self.app.entrypoint(self._entrypoint(kind))(_wrap(body))
        self.concurrency = concurrency

    async def start_worker(self) -> None:
        c = self.concurrency
        self.task = asyncio.create_task(
            self.app.run(batch_size=_batch_size(c), max_concurrent_tasks=c)
        )
        await asyncio.sleep(0)

    async def stop_worker(self) -> None:
        self.app.shutdown.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 10)
        except BaseException:
            await cancel_quietly(self.task)
        await self.worker_conn.close()

    async def cleanup(self) -> None:
        conn = await self._connect()
        try:
            pattern = f"%_{self.target.token}"
            for table in ("pgqueuer", "pgqueuer_log", "pgqueuer_statistics"):
                await conn.execute(f"DELETE FROM {table} WHERE entrypoint LIKE $1", pattern)
        finally:
            await conn.close()


def _wrap(body: Any) -> Any:
    async def task(job: Any) -> None:
        kwargs = json.loads(job.payload) if job.payload else {}
        await body(**kwargs)

    return task
