"""The example's tasks: a report that reports its progress page by page, and a greeting."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor import Registry
from conveyor.types import Context

registry = Registry()


@registry.task(timeout=3600)
async def build_report(
    ctx: Context, *, pages: int = 5, seconds_per_page: float = 1.0
) -> dict[str, Any]:
    """Render ``pages`` pages, telling the job's progress after each one."""
    job = ctx["job"]
    for page in range(1, pages + 1):
        if page > 1:
            await asyncio.sleep(seconds_per_page)  # stands for the real work of a page
        await job.update(progress=round(page / pages, 3))
    return {"pages": pages, "url": f"/reports/{job.key}.pdf"}


@registry.task
async def greet(ctx: Context, *, name: str) -> str:
    """Say hello."""
    return f"Hello, {name}!"
