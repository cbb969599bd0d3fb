"""SAQ's exception types and helpers: code that catches what SAQ raises, or calls
``saq.utils``, keeps working under ``conveyor.``."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from conveyor import CronJob, Job, Queue, Worker
from conveyor.errors import (
    ConveyorError,
    CronExpressionError,
    InvalidUrlError,
    JobNotFoundError,
    MissingDependencyError,
    UnsupportedURLError,
)
from conveyor.testing.fixtures import QueueFactory
from conveyor.utils import (
    cancel_tasks,
    exponential_backoff,
    millis,
    now,
    now_seconds,
    seconds,
    uuid1,
)


async def tick(ctx: dict[str, Any]) -> None:
    pass


async def test_refreshing_a_missing_job_raises_a_runtime_error(make_queue: QueueFactory) -> None:
    # SAQ's refresh raises RuntimeError for a job that no longer exists.
    queue: Queue = await make_queue()
    job = Job("tick", queue=queue)  # never enqueued
    with pytest.raises(RuntimeError) as caught:
        await job.refresh()
    assert isinstance(caught.value, JobNotFoundError) and isinstance(caught.value, ConveyorError)
    with pytest.raises(RuntimeError):
        await queue.refresh(job)


@pytest.mark.parametrize("cron", ["not a cron", "* * * *", "61 * * * *"])
def test_an_invalid_cron_is_a_value_error(cron: str) -> None:
    # SAQ's worker raises ValueError for an invalid cron; here it is raised no later.
    with pytest.raises(ValueError) as caught:
        Worker(Queue.from_url("memory://"), [tick], cron_jobs=[CronJob(tick, cron=cron)])
    assert isinstance(caught.value, CronExpressionError)


def test_saqs_error_names_are_conveyor_errors() -> None:
    assert issubclass(UnsupportedURLError, InvalidUrlError)
    assert issubclass(InvalidUrlError, ConveyorError)
    assert issubclass(MissingDependencyError, ConveyorError)
    with pytest.raises(InvalidUrlError):
        Queue.from_url("amqp://localhost")


def test_time_helpers() -> None:
    before = time.time()
    assert before * 1000 - 1 <= now() <= time.time() * 1000 + 1
    assert isinstance(now(), int)
    assert before <= now_seconds() <= time.time()
    assert millis(1.5) == 1500 and seconds(1500) == 1.5
    value = uuid1()
    assert uuid.UUID(value).version == 1 and value != uuid1()


def test_exponential_backoff() -> None:
    no_jitter = [exponential_backoff(n, 0.5, jitter=False) for n in range(0, 5)]
    assert no_jitter == [0.5, 0.5, 1.0, 2.0, 4.0]
    assert exponential_backoff(10, 1.0, max_delay=3.0, jitter=False) == 3.0
    assert exponential_backoff(3, 1.0, max_delay=0.0, jitter=False) == 0.0
    drawn = [exponential_backoff(3, 1.0) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in drawn) and len(set(drawn)) > 1


async def test_cancel_tasks_cancels_and_waits_for_them() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(forever()) for _ in range(3)]
    await started.wait()
    await cancel_tasks(tasks, timeout=5)
    assert all(task.cancelled() for task in tasks)
    await cancel_tasks([])
