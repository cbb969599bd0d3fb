"""The retention purge leaves the storage to the workers between its batches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conveyor.observability.retention import purge_runs_older_than


class SlowPurges:
    """A backend whose every purge batch takes 30 ms and deletes a full batch, three times."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    async def purge_runs(self, before_ms: int, limit: int) -> int:
        started = time.monotonic()
        await asyncio.sleep(0.03)
        self.calls.append((started, time.monotonic()))
        return limit if len(self.calls) < 3 else 0


async def test_the_purge_pauses_after_each_batch_as_long_as_the_batch_took() -> None:
    backend: Any = SlowPurges()

    deleted = await purge_runs_older_than(backend, 0, batch=10)

    assert deleted == 20
    assert len(backend.calls) == 3
    for (start, end), (next_start, _) in zip(backend.calls, backend.calls[1:], strict=False):
        # A sleep never ends early: the next batch starts no sooner than the batch's length.
        assert next_start - end >= (end - start) * 0.99
