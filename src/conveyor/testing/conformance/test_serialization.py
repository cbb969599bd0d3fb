"""Custom serializers: a queue's ``dump``/``load`` pair is used for everything it stores."""

from __future__ import annotations

import json
from typing import Any

from conveyor.job import Status
from conveyor.testing.fixtures import running_worker
from conveyor.testing.tasks import TEST_FUNCTIONS

__all__ = ["test_custom_bytes_serializer_round_trips_jobs_and_results"]


def _dump(value: Any) -> bytes:
    return b"custom:" + json.dumps(value, sort_keys=True).encode()


def _load(payload: bytes | str) -> Any:
    raw = payload.encode() if isinstance(payload, str) else payload
    assert raw.startswith(b"custom:"), raw[:20]
    return json.loads(raw[len(b"custom:") :])


async def test_custom_bytes_serializer_round_trips_jobs_and_results(make_queue: Any) -> None:
    queue = await make_queue("custom", dump=_dump, load=_load)
    async with running_worker(queue, TEST_FUNCTIONS):
        assert await queue.apply("echo", value={"nested": [1, "two"]}, timeout=10) == {
            "nested": [1, "two"]
        }
        job = await queue.enqueue("fail", message="bad")
        assert job is not None
        await job.refresh(until_complete=10)
    assert job.status == Status.FAILED and "bad" in (job.error or "")
    info = await queue.info()
    assert info["name"] == "custom"
