"""Conveyor on Redis, PostgreSQL and SQLite, with its defaults (run records and log
capture on)."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
from typing import Any

import probe

from adapters.base import Adapter, cancel_quietly, delete_redis_keys


def _wrap(body: Any) -> Any:
    async def task(ctx: dict[str, Any], **kwargs: Any) -> None:
        await body(**kwargs)

    return task


class _Conveyor(Adapter):
    package = "conveyor"
    bulk_api = "Queue.enqueue_many"

    def _url(self) -> str:
        raise NotImplementedError

    def _queue(self) -> Any:
        from conveyor.queue import Queue

        return Queue.from_url(self._url(), name=self.target.token)

    async def open(self) -> None:
        self.queue = self._queue()
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self, kind: str, **kwargs: Any) -> None:
        await self.queue.enqueue(kind, **kwargs)

    async def enqueue_bulk(self, kind: str, kwargs_list: Any) -> None:
        from conveyor.job import Job

        await self.queue.enqueue_many(Job(kind, kwargs=dict(kw) or None) for kw in kwargs_list)

    async def prepare_worker(self, concurrency: int) -> None:
        from conveyor.worker import Worker

        functions = [(kind, _wrap(body)) for kind, body in probe.BODIES.items()]
        self.worker_queue = self._queue()
        await self.worker_queue.connect()
        self.worker = Worker(self.worker_queue, functions, concurrency=concurrency)

    async def start_worker(self) -> None:
        self.task = asyncio.create_task(self.worker.start())
        await asyncio.sleep(0)

    async def settle(self) -> None:
        # Outcomes are written behind, in batches: the measurement ends once the last
        # batch is stored, which a graceful stop waits for.
        await self.stop_worker()

    async def stop_worker(self) -> None:
        if not self.task.done():
            await self.worker.stop()
            try:
                await asyncio.wait_for(asyncio.shield(self.task), 10)
            finally:
                await cancel_quietly(self.task)
        self.task.result()
        await self.worker_queue.disconnect()


class ConveyorRedis(_Conveyor):
    name = "Conveyor-redis"
    group = "redis"

    def _url(self) -> str:
        return f"{self.target.redis_url}?prefix={self.target.token}"

    async def cleanup(self) -> None:
        await delete_redis_keys(self.target.redis_url, f"{self.target.token}:*")


class ConveyorPostgres(_Conveyor):
    name = "Conveyor-postgres"
    group = "postgres"

    def _url(self) -> str:
        return f"{self.target.pg_dsn}?schema={self.target.token}"

    async def cleanup(self) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(
            self.target.pg_dsn, autocommit=True
        ) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.target.token}" CASCADE')


class ConveyorSqlite(_Conveyor):
    name = "Conveyor-sqlite"
    group = "postgres"  # shown with the SQL group, for reference

    def _url(self) -> str:
        return f"sqlite:///{self.target.workdir}/{self.target.token}.db"

    async def cleanup(self) -> None:
        for path in glob.glob(f"{self.target.workdir}/{self.target.token}.db*"):
            if path.endswith("-wake"):  # the directory of the wake-up sockets
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
