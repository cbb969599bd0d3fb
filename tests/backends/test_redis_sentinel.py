"""The Redis backend with Sentinel: ``redis+sentinel://`` URLs, and a forced failover in the
middle of a drain by a worker process (a master, a replica and two sentinels of the test's
own, on spare ports)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from conveyor.backends import backend_from_url
from conveyor.backends.base import RunFilter
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.topology import SentinelTopology, parse
from conveyor.errors import ConfigurationError
from conveyor.job import Status
from conveyor.queue import Queue
from conveyor.testing import wait_until
from conveyor.testing.faults import WorkerProcess
from conveyor.testing.fixtures import unavailable
from conveyor.testing.redis_servers import missing_tools, redis_sentinel, spare_ports

SERVICE = "conveyor"


def test_sentinel_urls_name_the_sentinels_the_service_and_the_master_settings() -> None:
    pools = {"max_connections": 7, "timeout": 1.0}
    url = (
        "redis+sentinel://user:secret@10.0.0.1:26379,10.0.0.2:26380/mymaster/3"
        "?socket_timeout=2&sentinel_password=watch"
    )
    topology = parse(url, pools)
    assert isinstance(topology, SentinelTopology) and topology.service == "mymaster"
    sentinels = [c.connection_pool.connection_kwargs for c in topology._sentinel.sentinels]
    assert [(k["host"], k["port"], k.get("password")) for k in sentinels] == [
        ("10.0.0.1", 26379, "watch"),
        ("10.0.0.2", 26380, "watch"),
    ]
    master = topology._connection_kwargs
    assert (master["username"], master["password"], master["db"]) == ("user", "secret", 3)
    assert master["socket_timeout"] == 2.0
    client = topology.client(("10.0.0.3", 6379))
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("10.0.0.3", 6379, 3)
    assert client.connection_pool.max_connections == 7
    backend = backend_from_url(url + "&prefix=p", "q")
    assert isinstance(backend, RedisBackend) and backend.keys.prefix == "p"
    assert backend.describe()["deployment"] == "sentinel"
    for bad in (
        "redis+sentinel://10.0.0.1:26379",  # no service
        "redis+sentinel://10.0.0.1/mymaster",  # no port
        "redis+sentinel://10.0.0.1:26379/mymaster/x",  # a db that is not a number
        "redis+cluster://10.0.0.1:7000/0",  # a cluster has no db
        "redis+replicas://10.0.0.1:7000",
    ):
        with pytest.raises(ConfigurationError) as info:
            backend_from_url(bad, "q")
        assert "secret" not in str(info.value)


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, list[int]]]:
    reason = missing_tools()
    if reason is not None:
        unavailable(reason)
    with redis_sentinel(tmp_path_factory.mktemp("sentinel")) as (master, replicas, sentinels):
        yield master, replicas[0], sentinels


@pytest.fixture
async def url(sentinel_set: tuple[int, int, list[int]]) -> AsyncIterator[str]:
    _, _, sentinels = sentinel_set
    dead = spare_ports(1)[0]  # a sentinel that is down: the next one answers
    hosts = ",".join(f"127.0.0.1:{port}" for port in (dead, *sentinels))
    url = f"redis+sentinel://{hosts}/{SERVICE}?prefix=test-{uuid.uuid4().hex[:10]}"
    yield url
    b = RedisBackend.from_url(url, "default")
    await b.drop()
    await b.disconnect()


async def _master(sentinel_port: int) -> int:
    client = Redis(host="127.0.0.1", port=sentinel_port)
    try:
        _, port = await client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)
    finally:
        await client.aclose()


async def _completed(queue: Queue, at_least: int) -> bool:
    try:
        counts = await queue.backend.count([Status.COMPLETE.value])
    except Exception:
        return False  # the failover is under way
    return counts[Status.COMPLETE.value] >= at_least


pytestmark = pytest.mark.slow


async def test_a_failover_in_the_middle_of_a_drain_loses_no_job(
    url: str, sentinel_set: tuple[int, int, list[int]]
) -> None:
    _, _, sentinels = sentinel_set
    before = await _master(sentinels[0])
    queue = Queue.from_url(url)
    await queue.connect()
    keys = [f"job-{n}" for n in range(120)]
    options: dict[str, Any] = {"retries": 3, "timeout": 60}
    for key in keys:
        await queue.enqueue("sleep", key=key, seconds=0.1, value=key, **options)
    try:
        async with WorkerProcess(url, lease_s=2.0, concurrency=4) as worker:
            await wait_until(lambda: _completed(queue, 10), message="the drain under way")
            sentinel = Redis(host="127.0.0.1", port=sentinels[-1])
            assert await sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
            await sentinel.aclose()
            counts = await queue.backend.count([Status.COMPLETE.value])
            assert counts[Status.COMPLETE.value] < len(keys)  # in the middle of the drain
            await wait_until(
                lambda: _moved(sentinels[0], before), timeout=30, message="a new master"
            )
            # The test's own queue moves on the sentinels' announcement, while the old
            # master still takes writes (it is demoted seconds later), where they would be
            # lost.
            after = await _master(sentinels[0])
            await wait_until(lambda: _follows(queue, after), message="the queue moved")
            assert await _role(before) == "master"
            # The worker carries on against the new master: jobs enqueued there run too.
            later = [f"later-{n}" for n in range(10)]
            for key in later:
                await queue.enqueue("sleep", key=key, seconds=0.01, value=key, **options)
            jobs = await queue.wait(keys + later, timeout=90)
            assert worker.alive, worker.output()
            output = worker.output()
        assert queue.backend.describe()["address"] == f"127.0.0.1:{after}" != before
        for job in jobs:
            assert job.status == Status.COMPLETE and job.result == job.key, (job, output)
            runs, _ = await queue.backend.list_runs(RunFilter(key=job.key), 0, 10)
            assert [run.status for run in runs].count("complete") == 1, (job.key, runs)
    finally:
        await queue.disconnect()


async def _moved(sentinel_port: int, before: int) -> bool:
    return await _master(sentinel_port) != before


async def _follows(queue: Queue, port: int) -> bool:
    try:
        await queue.backend.count([Status.COMPLETE.value])
    except Exception:
        return False
    return bool(queue.backend.describe()["address"] == f"127.0.0.1:{port}")


async def _role(port: int) -> str:
    client = Redis(host="127.0.0.1", port=port)
    try:
        return str((await client.execute_command("ROLE"))[0].decode())
    finally:
        await client.aclose()
