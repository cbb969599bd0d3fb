"""The ``orjson`` extra: orjson's ``dumps``/``loads`` serve as a queue's serializer."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Queue
from conveyor.testing.fixtures import running_worker
from conveyor.testing.tasks import TEST_FUNCTIONS

orjson = pytest.importorskip("orjson", reason='the orjson extra: pip install -e ".[dev]"')


async def test_orjson_serializes_jobs_and_results(tmp_path: Path) -> None:
    queue = Queue.from_url(
        f"sqlite:///{tmp_path / 'jobs.db'}", dump=orjson.dumps, load=orjson.loads
    )
    await queue.connect()
    try:
        async with running_worker(queue, TEST_FUNCTIONS):
            value = {"nested": [1, "two", 3.5, None]}
            assert await queue.apply("echo", value=value, timeout=10) == value
    finally:
        await queue.disconnect()
