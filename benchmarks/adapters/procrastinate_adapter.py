"""Procrastinate (PostgreSQL, psycopg connector). Fixed table names: it runs in the
benchmark's own database; its queue is named after the measurement's token."""

from __future__ import annotations

import asyncio
from typing import Any

import probe

from adapters.base import Adapter, cancel_quietly


def _wrap(body: Any) -> Any:
    async def task(**kwargs: Any) -> None:
        await body(**kwargs)

    return task


def _app(dsn: str, queue: str) -> tuple[Any, dict[str, Any]]:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))
    tasks = {
        kind: app.task(name=kind, queue=queue)(_wrap(body)) for kind, body in probe.BODIES.items()
    }
    return app, tasks


class Procrastinate(Adapter):
    name = "procrastinate"
    group = "postgres"
    package = "procrastinate"
    bulk_api = "Task.batch_defer_async"

    @classmethod
    async def prepare_database(cls, dsn: str) -> None:
        app, _ = _app(dsn, "prepare")
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def open(self) -> None:
        self.app, self.tasks = _app(self.target.pg_dsn, self.target.token)
        await self.app.open_async()

    async def close(self) -> None:
        await self.app.close_async()

    async def enqueue(self, kind: str, **kwargs: Any) -> None:
        await self.tasks[kind].defer_async(**kwargs)

    async def enqueue_bulk(self, kind: str, kwargs_list: Any) -> None:
        await self.tasks[kind].batch_defer_async(*kwargs_list)

    async def prepare_worker(self, concurrency: int) -> None:
        from procrastinate.worker import Worker

        self.worker_app, _ = _app(self.target.pg_dsn, self.target.token)
        await self.worker_app.open_async()
        self.worker = Worker(
            self.worker_app,
            queues=[self.target.token],
            concurrency=concurrency,
            install_signal_handlers=False,
        )

    async def start_worker(self) -> None:
        self.task = asyncio.create_task(self.worker.run())
        await asyncio.sleep(0)

    async def stop_worker(self) -> None:
        self.worker.stop()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 10)
        except BaseException:
            await cancel_quietly(self.task)
        await self.worker_app.close_async()

    async def cleanup(self) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.target.pg_dsn) as conn:
            await conn.execute(
                "DELETE FROM procrastinate_events WHERE job_id IN "
                "(SELECT id FROM procrastinate_jobs WHERE queue_name = %s)",
                (self.target.token,),
            )
            await conn.execute(
                "DELETE FROM procrastinate_jobs WHERE queue_name = %s", (self.target.token,)
            )
