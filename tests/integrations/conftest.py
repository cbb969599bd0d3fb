"""Fixtures of the web framework integration tests: isolated queue URLs on every backend.

The repository's root is put on ``sys.path`` so that the example applications import as
``examples.<name>.app``, as ``uvicorn`` imports them when run from the root.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor import Queue
from conveyor.testing.fixtures import backend_url_for

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


async def _drop(url: str) -> None:
    """Delete what a test left under its Redis prefix or PostgreSQL schema."""
    queue = Queue.from_url(url)
    with contextlib.suppress(Exception):
        await queue.connect()
        await queue.backend.drop()
    with contextlib.suppress(Exception):
        await queue.disconnect()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file of the test's own."""
    return backend_url_for("sqlite", tmp_path)


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    """A Redis key prefix of the test's own (skipped, or failed under CI, without Redis)."""
    url = backend_url_for("redis", tmp_path)
    yield url
    await _drop(url)


@pytest.fixture
async def postgres_url(tmp_path: Path) -> AsyncIterator[str]:
    """A PostgreSQL schema of the test's own (skipped, or failed under CI, without it)."""
    url = backend_url_for("postgres", tmp_path)
    yield url
    await _drop(url)
