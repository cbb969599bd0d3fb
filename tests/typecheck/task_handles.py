"""Checked by mypy (see tests/test_tasks.py): correct uses of task handles type-check.

Not collected by pytest (no ``test_`` prefix) and never run: mypy reads it.
"""

from __future__ import annotations

from typing import Any, assert_type

from conveyor.job import Job
from conveyor.queue import Queue
from conveyor.tasks import Registry, Task, task
from conveyor.types import Context, SettingsDict

registry = Registry()


@task
async def add(ctx: Context, *, a: int, b: int = 0) -> int:
    return a + b


@task(name="mail.send", timeout=30, retries=3)
async def send_email(ctx: Context, *, to: str, subject: str, key: str | None = None) -> None:
    ctx["db"] = object()  # users keep their own resources in the context


@task
def render(ctx: dict[str, Any], *, template: str) -> str:
    return template


@task
async def flexible(ctx: Context, /, **kwargs: str) -> int:
    return len(kwargs)


@registry.task
async def registered(ctx: Context, *, n: int) -> list[int]:
    return list(range(n))


@registry.task(timeout=5)
async def registered_with_options(ctx: Context, *, text: str) -> str:
    return text


@registry.scheduled_task(cron="0 3 * * *", timezone="America/New_York", timeout=600)
async def nightly(ctx: Context) -> dict[str, str]:
    return {"status": "ok"}


async def use(queue: Queue) -> None:
    job = await add.enqueue(queue, a=1, b=2)
    assert_type(job, Job | None)
    assert_type(await add.apply(queue, a=1), int)
    assert_type(await add.apply(queue, 5.0, a=1), int)
    assert_type(await add({}, a=1, b=2), int)
    assert_type(await render({}, template="x"), str)
    assert_type(await render.apply(queue, template="x"), str)
    await send_email.enqueue(queue, to="a@example.com", subject="Hi", key="not-the-job-key")
    await send_email.options(key="welcome-1", scheduled=0, timeout=10).enqueue(
        queue, to="a@example.com", subject="Hi"
    )
    assert_type(await registered.apply(queue, n=3), list[int])
    assert_type(await registered_with_options.apply(queue, text="t"), str)
    assert_type(await nightly.apply(queue), dict[str, str])
    assert_type(await flexible.apply(queue, anything="1", goes="here"), int)
    # Queue's own SAQ-style API keeps taking handles and names.
    await queue.enqueue(add, a=1, b=2)
    await queue.enqueue("add", a=1, b=2)
    handle: Task[..., int] = add
    assert_type(handle, Task[..., int])


settings: SettingsDict = {
    "functions": registry,
    "cron_jobs": registry.cron_jobs,
    "concurrency": 4,
    "cron_tz": "UTC",
    "timers": {"schedule": 1},
}
