"""Reading a queue's jobs, counts and state: ``Queue.iter_jobs``, ``count`` and ``info``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

from conveyor.job import Job, Status

if TYPE_CHECKING:
    from conveyor.queue import Queue


async def iter_jobs(
    queue: Queue, statuses: Iterable[Status] | None, batch_size: int
) -> AsyncGenerator[Job, None]:
    """Every job of ``queue`` with one of ``statuses`` (all for None), newest first, by pages."""
    wanted = [Status(s).value for s in statuses] if statuses is not None else None
    offset = 0
    while True:
        rows = await queue.backend.list_jobs(wanted, offset, batch_size)
        for row in rows:
            job = queue.deserialize(row)
            if job is not None:
                yield job
        if len(rows) < batch_size:
            return
        offset += batch_size


async def count(queue: Queue, kind: str) -> int:
    """How many jobs of ``queue`` are ``queued``, ``active``, ``scheduled`` or ``incomplete``.

    Raises:
        ValueError: For an unknown kind, listing the known ones.
    """
    kinds = {
        "queued": ["queued"],
        "active": ["active", "aborting"],
        "scheduled": ["scheduled"],
        "incomplete": ["queued", "active", "aborting"],
    }
    if kind not in kinds:
        raise ValueError(f"unknown count kind {kind!r}; use one of {', '.join(kinds)}")
    counts = await queue.backend.count(kinds[kind])
    return sum(counts.values())


async def info(queue: Queue, jobs: bool, offset: int, limit: int) -> dict[str, Any]:
    """The state of ``queue``: workers, counts and (with ``jobs``) a page of incomplete jobs."""
    counts = await queue.backend.count(["queued", "active", "aborting", "scheduled"])
    workers = {wid: queue.load(info) for wid, info in (await queue.backend.workers()).items()}
    out: dict[str, Any] = {
        "name": queue.name,
        "workers": workers,
        "queued": counts["queued"] - counts["scheduled"],
        "active": counts["active"] + counts["aborting"],
        "scheduled": counts["scheduled"],
        "jobs": [],
    }
    if jobs:
        rows = await queue.backend.list_jobs(["queued", "active", "aborting"], offset, limit)
        out["jobs"] = [j.info(full=True) for r in rows if (j := queue.deserialize(r))]
    return out


__all__ = ["count", "info", "iter_jobs"]
