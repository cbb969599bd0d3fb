"""ARQ (Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import probe

from adapters.base import Adapter, cancel_quietly, delete_redis_keys

#: ARQ polls its queue (it has no blocking wait); its default poll_delay of 0.5 s would
#: make the drain measure sleeping (10,000 jobs / 100 per poll * 0.5 s) rather than work.
POLL_DELAY = 0.05


def _wrap(body: Any) -> Any:
    async def task(ctx: dict[str, Any], **kwargs: Any) -> None:
        await body(**kwargs)

    return task


class Arq(Adapter):
    name = "ARQ"
    group = "redis"
    package = "arq"
    notes = f"poll_delay={POLL_DELAY}s (default 0.5 s)"

    def _settings(self) -> Any:
        from arq.connections import RedisSettings

        return RedisSettings.from_dsn(self.target.redis_url)

    async def open(self) -> None:
        from arq import create_pool

        self.pool = await create_pool(self._settings(), default_queue_name=self.target.token)

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue(self, kind: str, **kwargs: Any) -> None:
        # Job ids carry the token so that cleanup can find arq:job:/arq:result: keys.
        job_id = f"{self.target.token}-{uuid.uuid4().hex}"
        await self.pool.enqueue_job(kind, _job_id=job_id, **kwargs)

    async def prepare_worker(self, concurrency: int) -> None:
        from arq import Worker, func

        functions = [func(_wrap(body), name=kind) for kind, body in probe.BODIES.items()]
        self.worker = Worker(
            functions,
            queue_name=self.target.token,
            redis_settings=self._settings(),
            max_jobs=concurrency,
            poll_delay=POLL_DELAY,
            handle_signals=False,
        )

    async def start_worker(self) -> None:
        self.task = asyncio.create_task(self.worker.async_run())
        await asyncio.sleep(0)

    async def stop_worker(self) -> None:
        # close() cancels the job tasks and re-raises their CancelledError.
        with contextlib.suppress(BaseException):
            await self.worker.close()
        await cancel_quietly(self.task)
        if self.worker._pool is not None:
            await self.worker._pool.aclose()

    async def cleanup(self) -> None:
        await delete_redis_keys(self.target.redis_url, f"arq:*{self.target.token}*")
        await delete_redis_keys(self.target.redis_url, f"{self.target.token}*")
