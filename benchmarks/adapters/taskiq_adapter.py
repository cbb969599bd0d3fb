"""taskiq with taskiq-redis: RedisStreamBroker (acknowledged delivery) and the Redis
result backend (so that, like the others, it stores each job's outcome)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import probe

from adapters.base import Adapter, cancel_quietly, delete_redis_keys


def _wrap(body: Any) -> Any:
    async def task(**kwargs: Any) -> None:
        await body(**kwargs)

    return task


def _build(url: str, token: str) -> tuple[Any, dict[str, Any]]:
    from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

    backend = RedisAsyncResultBackend(url, prefix_str=token, result_ex_time=3600)
    broker = RedisStreamBroker(url, queue_name=token).with_result_backend(backend)
    tasks = {}
    for kind, body in probe.BODIES.items():
        tasks[kind] = broker.task(task_name=kind)(_wrap(body))
    return broker, tasks


class Taskiq(Adapter):
    name = "taskiq-redis"
    group = "redis"
    package = "taskiq-redis"
    notes = "RedisStreamBroker + RedisAsyncResultBackend; plain asyncio loop (its CLI picks uvloop)"

    @classmethod
    def version(cls) -> str:
        import importlib.metadata as md

        return f"{md.version('taskiq-redis')} (taskiq {md.version('taskiq')})"

    async def open(self) -> None:
        self.broker, self.tasks = _build(self.target.redis_url, self.target.token)
        await self.broker.startup()  # declares the consumer group before any message

    async def close(self) -> None:
        await self.broker.shutdown()

    async def enqueue(self, kind: str, **kwargs: Any) -> None:
        await self.tasks[kind].kiq(**kwargs)

    async def prepare_worker(self, concurrency: int) -> None:
        from taskiq.receiver import Receiver

        self.worker_broker, _ = _build(self.target.redis_url, self.target.token)
        self.worker_broker.is_worker_process = True
        self.pool = ThreadPoolExecutor()
        self.receiver = Receiver(
            self.worker_broker, executor=self.pool, max_async_tasks=concurrency
        )
        self.finish = asyncio.Event()

    async def start_worker(self) -> None:
        self.task = asyncio.create_task(self.receiver.listen(self.finish))
        await asyncio.sleep(0)

    async def stop_worker(self) -> None:
        self.finish.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        except BaseException:
            await cancel_quietly(self.task)
        await self.worker_broker.shutdown()
        self.pool.shutdown(wait=False)

    async def cleanup(self) -> None:
        await delete_redis_keys(self.target.redis_url, f"*{self.target.token}*")
