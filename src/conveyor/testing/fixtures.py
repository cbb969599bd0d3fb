"""Pytest fixtures for the conformance suite and for users' own tests.

Use in a ``conftest.py``::

    from conveyor.testing.fixtures import *  # noqa: F401,F403

then define a ``conveyor_url`` fixture returning the queue URL to test (the suite's own
``tests/test_conformance.py`` parametrizes it over every backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from conveyor.queue import Queue
from conveyor.testing.backends import (
    REDIS_CLUSTER_VARIABLE,
    isolated_url,
    postgres_url,
    proxied_kind,
    redis_cluster_url,
    unreachable_reason,
)
from conveyor.testing.pgbouncer import PgBouncer
from conveyor.worker import Worker

if TYPE_CHECKING:
    from conveyor.testing.http_server import ProxyServer

QueueFactory = Callable[..., Any]


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason`` (a server it needs is missing); fail instead under
    ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: backend tests may not be skipped)")
    pytest.skip(reason)


def require_backend(*kinds: str) -> None:
    """Skip the test when a backend's server is unreachable; fail instead under ``CI=true``."""
    for kind in kinds:
        reason = unreachable_reason(kind)
        if reason is not None:
            unavailable(reason)


@pytest.fixture(scope="session")
def conveyor_redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """The ``redis+cluster://`` URL of a Redis Cluster for the session (for each pytest-xdist
    worker): ``CONVEYOR_TEST_REDIS_CLUSTER`` when set, else three local masters started here
    with ``redis-server --cluster-enabled yes`` and ``redis-cli --cluster create`` on spare
    ports, and stopped at the end. None when they cannot be started (``require_backend``
    then skips with the reason, or fails under ``CI=true``)."""
    given = redis_cluster_url()
    if given is not None:
        yield given
        return
    from conveyor.testing.redis_servers import cluster_url, missing_tools, redis_cluster

    missing = missing_tools()
    if missing is not None:
        yield None
        return
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as ports:
        url = cluster_url(ports)
        os.environ[REDIS_CLUSTER_VARIABLE] = url
        try:
            yield url
        finally:
            os.environ.pop(REDIS_CLUSTER_VARIABLE, None)


def backend_url_for(kind: str, tmp_path: Path, proxy: ProxyServer | None = None) -> str:
    """An isolated URL for ``kind``; skips (or fails under ``CI=true``) when unreachable.

    Args:
        kind: One of :data:`~conveyor.testing.backends.KINDS`.
        tmp_path: A directory owned by the test.
        proxy: The server that an ``http-X`` kind goes through (the
            :func:`conveyor_http_proxy` fixture); other kinds ignore it.
    """
    require_backend(kind)
    proxied = proxied_kind(kind)
    if proxied is None:
        return isolated_url(kind, tmp_path)
    if proxy is None:
        raise ValueError(f"backend kind {kind!r} needs proxy= (the conveyor_http_proxy fixture)")
    return proxy.url_for(isolated_url(proxied, tmp_path))


@pytest.fixture(scope="session")
def conveyor_http_proxy() -> Iterator[ProxyServer]:
    """One HTTP proxy server for the session (for each xdist worker), started on first use."""
    from conveyor.testing.http_server import ProxyServer

    with ProxyServer() as server:
        yield server


@pytest.fixture(scope="session")
def pgbouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of the test PostgreSQL server, for the whole
    session (each pytest-xdist worker starts its own); skips (or fails under ``CI=true``)
    without the server or the ``pgbouncer`` executable."""
    require_backend("pgbouncer")
    bouncer = PgBouncer(postgres_url(), tmp_path_factory.mktemp("pgbouncer")).start()
    try:
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture
async def make_queue(conveyor_url: str) -> AsyncIterator[QueueFactory]:
    """A factory of connected queues on the test's URL; everything is dropped afterwards.

    Queues of one test share storage (one memory store, one file, one prefix, one schema),
    as separate processes would.
    """
    created: list[Queue] = []
    shared: dict[str, Any] = {}

    async def factory(name: str = "default", **kwargs: Any) -> Queue:
        if conveyor_url.startswith("memory://"):
            from conveyor.backends.memory import MemoryBackend, MemoryStore

            store = shared.setdefault(name, MemoryStore())
            queue = Queue(MemoryBackend(name, store=store), name=name, **kwargs)
        else:
            queue = Queue.from_url(conveyor_url, name=name, **kwargs)
        await queue.connect()
        created.append(queue)
        return queue

    yield factory
    for queue in reversed(created):
        with contextlib.suppress(Exception):
            if queue is created[0]:
                await queue.connect()
                await queue.backend.drop()
        with contextlib.suppress(Exception):
            await queue.disconnect()


@contextlib.asynccontextmanager
async def running_worker(queue: Queue, functions: Any, **settings: Any) -> AsyncIterator[Worker]:
    """Run a worker in the background for the duration of the block, then stop it."""
    settings.setdefault("timers", {"schedule": 0.2, "stats": 1, "sweep": 0.2, "abort": 0.1})
    settings.setdefault("shutdown_grace_period_s", 1.0)
    worker = Worker(queue, functions, **settings)
    task = asyncio.create_task(worker.start())
    try:
        yield worker
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 30)


def worker_process_command(url: str, queue_name: str, *args: str) -> list[str]:
    """The command line of a worker subprocess running the test functions."""
    return [sys.executable, "-m", "conveyor.testing.worker_process", url, queue_name, *args]


__all__ = [
    "backend_url_for",
    "conveyor_http_proxy",
    "conveyor_redis_cluster",
    "make_queue",
    "pgbouncer",
    "running_worker",
    "worker_process_command",
]
