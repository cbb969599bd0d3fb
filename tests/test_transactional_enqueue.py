"""Transactional enqueue through the Queue: a job exists iff the caller's transaction commits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigurationError, Queue
from conveyor.testing.fixtures import backend_url_for


async def check_rollback_and_commit(queue: Queue, conn: Any) -> None:
    """A job enqueued on ``conn`` and rolled back is gone; one committed is there and
    claimable."""
    job = await queue.enqueue("echo", key="rolled-back", connection=conn)
    assert job is not None
    await conn.rollback()
    await queue.enqueue("echo", key="committed", value=1, connection=conn)
    assert await queue.job("committed") is None  # not visible before commit
    await conn.commit()
    assert await queue.job("rolled-back") is None
    committed = await queue.job("committed")
    assert committed is not None and committed.kwargs == {"value": 1}
    worker_sees = await queue.dequeue()
    assert worker_sees is not None and worker_sees.key == "committed"


async def test_rolled_back_transaction_leaves_no_job(tmp_path: Path) -> None:
    url = backend_url_for("postgres", tmp_path)
    import psycopg

    from conveyor.backends.postgres.config import split_url

    queue = Queue.from_url(url)
    await queue.connect()
    try:
        conninfo, _ = split_url(url)
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            await check_rollback_and_commit(queue, conn)
    finally:
        await queue.backend.drop()  # type: ignore[attr-defined]
        await queue.disconnect()


async def test_backend_without_transactions_refuses_a_connection() -> None:
    queue = Queue.from_url("memory://")
    with pytest.raises(ConfigurationError, match="PostgreSQL can"):
        await queue.enqueue("echo", connection=object())
