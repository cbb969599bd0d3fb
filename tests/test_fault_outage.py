"""A backend that disappears for longer than the leases: every job runs once and is stored.

Two worker processes reach Redis or PostgreSQL through a :class:`FaultProxy`; the proxy cuts
every connection for several leases while jobs run and finish, then lets them through
again. Jobs that finished during the outage keep their leases until their outcomes are
stored, and no worker takes the expired leases of the others before they could renew.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.backends.base import RunFilter
from conveyor.job import Status
from conveyor.queue import Queue
from conveyor.testing.faults import FaultProxy, WorkerProcess
from conveyor.testing.fixtures import backend_url_for, require_backend
from conveyor.testing.helpers import wait_until

pytestmark = pytest.mark.slow

LEASE_S = 2.0
OUTAGE_S = 3 * LEASE_S


@pytest.fixture(params=["redis", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    kind = str(request.param)
    require_backend(kind)
    url = backend_url_for(kind, tmp_path)
    yield url
    queue = Queue.from_url(url)
    await queue.connect()
    await queue.backend.drop()
    await queue.disconnect()


async def test_jobs_run_once_across_an_outage_longer_than_their_leases(url: str) -> None:
    queue = Queue.from_url(url)
    await queue.connect()
    keys = [f"job-{n}" for n in range(12)]
    for key in keys:
        await queue.enqueue("sleep", key=key, seconds=0.5, value=key, retries=3, timeout=60)
    with FaultProxy.for_url(url) as proxy:
        through = proxy.url(url)
        async with (
            WorkerProcess(through, lease_s=LEASE_S, concurrency=4) as first,
            WorkerProcess(through, lease_s=LEASE_S, concurrency=4) as second,
        ):
            await wait_until(lambda: _count(queue, Status.ACTIVE, 2), message="jobs running")
            proxy.cut()
            back = time.monotonic() + OUTAGE_S
            # The outage itself is what the test is about: it lasts OUTAGE_S.
            await wait_until(lambda: time.monotonic() > back, timeout=OUTAGE_S + 1)
            proxy.heal()
            jobs = await queue.wait(keys, timeout=90)
            await first.terminate()
            await second.terminate()
            outputs = f"{first.output()}\n---\n{second.output()}"
    try:
        for job in jobs:
            assert job.status == Status.COMPLETE and job.result == job.key, job
            runs, _ = await queue.backend.list_runs(RunFilter(key=job.key), 0, 10)
            assert job.attempts == 1, (job.key, [(r.status, r.error) for r in runs], outputs)
            assert [run.status for run in runs] == ["complete"]
    finally:
        await queue.disconnect()


async def _count(queue: Queue, status: Status, at_least: int) -> bool:
    counts = await queue.backend.count([status.value])
    return counts[status.value] >= at_least
