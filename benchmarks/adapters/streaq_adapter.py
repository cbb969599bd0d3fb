"""streaQ (Redis, through coredis)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import probe

from adapters.base import Adapter, cancel_quietly, delete_redis_keys


def _wrap(body: Any) -> Any:
    async def task(**kwargs: Any) -> None:
        await body(**kwargs)

    return task


def _build(url: str, queue_name: str, concurrency: int = 16) -> tuple[Any, dict[str, Any]]:
    from streaq import Worker

    worker = Worker(
        redis_url=url, queue_name=queue_name, concurrency=concurrency, handle_signals=False
    )
    tasks = {}
    for kind, body in probe.BODIES.items():
        tasks[kind] = worker.task(name=kind)(_wrap(body))
    return worker, tasks


class Streaq(Adapter):
    name = "streaQ"
    group = "redis"
    package = "streaq"
    bulk_api = "Worker.enqueue_many"

    async def open(self) -> None:
        self.client, self.tasks = _build(self.target.redis_url, self.target.token)
        self.stack = contextlib.AsyncExitStack()
        await self.stack.enter_async_context(self.client)

    async def close(self) -> None:
        await self.stack.aclose()

    async def enqueue(self, kind: str, **kwargs: Any) -> None:
        await self.tasks[kind].enqueue(**kwargs)

    async def enqueue_bulk(self, kind: str, kwargs_list: Any) -> None:
        task = self.tasks[kind]
        await self.client.enqueue_many([task.enqueue(**kwargs) for kwargs in kwargs_list])

    async def prepare_worker(self, concurrency: int) -> None:
        self.worker, _ = _build(self.target.redis_url, self.target.token, concurrency)

    async def start_worker(self) -> None:
        self.task = asyncio.create_task(self.worker.run_async())
        await asyncio.sleep(0)

    async def stop_worker(self) -> None:
        await cancel_quietly(self.task)

    async def cleanup(self) -> None:
        await delete_redis_keys(self.target.redis_url, f"streaq:{self.target.token}*")
