"""Typed task handles and registries of tasks.

A :class:`Task` wraps a task function ``fn(ctx, *, ...)``. Its ``enqueue`` and ``apply`` take
the function's own arguments, and mypy checks them against the function's signature::

    @task(timeout=30)
    async def send_email(ctx: Context, *, to: str, subject: str) -> None: ...

    await send_email.enqueue(queue, to="a@example.com", subject="Hi")   # checked
    await send_email.options(key="welcome-1").enqueue(queue, to="a@example.com", subject="Hi")

A :class:`Registry` collects tasks and scheduled tasks from many modules, without any
module-level state: each application creates its own and hands it to its worker.
"""

from __future__ import annotations

# The public home of these names; each is defined in the module it is imported from.
from conveyor.registry import Registry
from conveyor.task_handles import JOB_OPTIONS, Task, TaskDecorator, task

__all__ = ["JOB_OPTIONS", "Registry", "Task", "TaskDecorator", "task"]
