"""SAQ on Redis and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import probe

from adapters.base import Adapter, cancel_quietly, delete_redis_keys


def _wrap(body: Any) -> Any:
    async def task(ctx: dict[str, Any], **kwargs: Any) -> None:
        await body(**kwargs)

    return task


class _Saq(Adapter):
    package = "saq"

    def _url(self) -> str:
        raise NotImplementedError

    def _queue(self) -> Any:
        from saq import Queue

        return Queue.from_url(self._url(), name=self.target.token)

    async def open(self) -> None:
        self.queue = self._queue()
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self, kind: str, **kwargs: Any) -> None:
        await self.queue.enqueue(kind, **kwargs)

    async def prepare_worker(self, concurrency: int) -> None:
        from saq import Worker

        self.worker_queue = self._queue()
        await self.worker_queue.connect()
        functions = [(kind, _wrap(body)) for kind, body in probe.BODIES.items()]
        self.worker = Worker(self.worker_queue, functions, concurrency=concurrency)

    async def start_worker(self) -> None:
        self.task = asyncio.create_task(self.worker.start())
        await asyncio.sleep(0)

    async def stop_worker(self) -> None:
        await self.worker.stop()
        await cancel_quietly(self.task)
        await self.worker_queue.disconnect()


class SaqRedis(_Saq):
    name = "SAQ-redis"
    group = "redis"

    def _url(self) -> str:
        return self.target.redis_url

    async def cleanup(self) -> None:
        # Job keys are saq:job:<queue>:..., the rest saq:<queue>:...
        await delete_redis_keys(self.target.redis_url, f"saq:*{self.target.token}*")


class SaqPostgres(_Saq):
    name = "SAQ-postgres"
    group = "postgres"

    def _url(self) -> str:
        return self.target.pg_dsn

    @classmethod
    async def prepare_database(cls, dsn: str) -> None:
        from saq import Queue

        queue = Queue.from_url(dsn, name="prepare")
        await queue.connect()  # creates saq_jobs, saq_stats, saq_versions
        await queue.disconnect()

    async def cleanup(self) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.target.pg_dsn) as conn:
            await conn.execute("DELETE FROM saq_jobs WHERE queue = %s", (self.target.token,))
            await conn.execute("DELETE FROM saq_stats WHERE queue_key = %s", (self.target.token,))
