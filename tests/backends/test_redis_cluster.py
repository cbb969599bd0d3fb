"""The Redis backend on a real local Redis Cluster (three masters, started once per session):
queues spread over the masters, a ``RedisCluster`` client given to the backend, a queue
whose slot is moved to another master while it is in use; and on a cluster whose masters
have replicas, the queue's master dying in the middle of a drain."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from backends.test_redis import _blocked_clients, done, job, kind_url
from conveyor.backends.base import Lease, RunFilter
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.keys import KeyScheme
from conveyor.backends.redis.topology import ClusterTopology
from conveyor.errors import BackendError, ConfigurationError
from conveyor.job import Status
from conveyor.queue import Queue
from conveyor.testing import wait_until
from conveyor.testing.faults import WorkerProcess
from conveyor.testing.fixtures import unavailable
from conveyor.testing.redis_servers import cluster_url, missing_tools, redis_cluster


@pytest.fixture
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return kind_url(request, "redis-cluster", tmp_path)


@pytest.fixture
async def masters(url: str) -> AsyncIterator[dict[str, Redis]]:
    """A client to each master, by its node id."""
    ports = [int(a.rsplit(":", 1)[1]) for a in url.split("://")[1].split("?")[0].split(",")]
    clients = {}
    for port in ports:
        client = Redis(host="127.0.0.1", port=port)
        clients[(await client.execute_command("CLUSTER", "MYID")).decode()] = client
    yield clients
    for client in clients.values():
        await client.aclose()


def prefix_of(url: str) -> str:
    return url.rsplit("prefix=", 1)[1]


async def owner(masters: dict[str, Redis], key: str) -> str:
    """The id of the master owning ``key``'s slot."""
    slot = key_slot(key.encode())
    client = next(iter(masters.values()))
    for start, end, primary, *_ in await client.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            for node, client in masters.items():
                if client.connection_pool.connection_kwargs["port"] == primary[1]:
                    return node
    raise AssertionError(f"slot {slot} is not covered")


async def start_moving(masters: dict[str, Redis], key: str, target: str) -> str:
    """Mark ``key``'s slot as migrating to the master ``target``, and move ``key`` there
    (the first step of a resharding); the id of the source."""
    slot = key_slot(key.encode())
    source = await owner(masters, key)
    await masters[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source)
    await masters[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target)
    await _migrate(masters[source], masters[target], [key])
    return source


async def _migrate(src: Redis, dst: Redis, keys: list[Any]) -> None:
    port = dst.connection_pool.connection_kwargs["port"]
    await src.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *keys)


async def finish_moving(masters: dict[str, Redis], key: str, source: str, target: str) -> None:
    """Move the rest of ``key``'s slot to ``target`` and give it the slot."""
    slot = key_slot(key.encode())
    src, dst = masters[source], masters[target]
    while keys := await src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        await _migrate(src, dst, keys)
    for client in (dst, src, *(c for n, c in masters.items() if n not in (source, target))):
        await client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target)


async def move_slot(masters: dict[str, Redis], key: str, target: str) -> None:
    """Move ``key``'s slot, with its keys, to the master ``target`` (as a resharding does)."""
    source = await start_moving(masters, key, target)
    await finish_moving(masters, key, source, target)


async def tryagain_replies(client: Redis) -> int:
    stats = await client.info("errorstats")
    return int(stats.get("errorstat_TRYAGAIN", {}).get("count", 0))


async def test_queues_spread_over_the_masters_and_each_works(
    url: str, masters: dict[str, Redis]
) -> None:
    prefix = prefix_of(url)
    by_node: dict[str, str] = {}
    for i in range(64):
        name = f"queue{i}"
        by_node.setdefault(await owner(masters, KeyScheme(prefix, name).key("ready")), name)
        if len(by_node) == 2:
            break
    (node_a, name_a), (node_b, name_b) = by_node.items()
    a = RedisBackend.from_url(url, name_a)
    b = RedisBackend.from_url(url, name_b)
    try:
        for backend in (a, b):
            await backend.connect()
            assert await backend.enqueue([job("x")]) == [True]
            [row] = await backend.claim("w", 1, 30, time.time())
            waiter = asyncio.create_task(backend.wait_for_finish(["x"], 30))
            await waiter  # the first wait subscribes
            waiter = asyncio.create_task(backend.wait_for_finish(["x"], 30))
            assert await backend.finish([done("x", row.run_id, token=row.token)]) == [True]
            await asyncio.wait_for(waiter, 10)  # woken by the sharded announcement
            [stored] = await backend.get(["x"])
            assert stored is not None and stored.status == "complete"
        assert a.describe()["address"] != b.describe()["address"]
        # Each queue's keys are on its own master only.
        for node, name, other in ((node_a, name_a, node_b), (node_b, name_b, node_a)):
            key = KeyScheme(prefix, name).job("x")
            assert await masters[node].exists(key) == 1
            assert (
                await masters[other].execute_command(
                    "CLUSTER", "COUNTKEYSINSLOT", key_slot(key.encode())
                )
                == 0
            )
    finally:
        await a.drop()  # every queue of the prefix, on every master
        for node in masters.values():
            assert [k async for k in node.scan_iter(match=f"{prefix}:*")] == []
        await a.disconnect()
        await b.disconnect()


async def test_a_redis_cluster_client_given_to_the_backend_is_used_and_left_open(
    url: str,
) -> None:
    address = url.split("://")[1].split(",")[0]
    client = RedisCluster.from_url(f"redis://{address}")
    b = RedisBackend(client, "q", prefix_of(url))
    try:
        await b.connect()
        assert b.describe()["deployment"] == "cluster"
        assert await b.enqueue([job("a")]) == [True]
        [row] = await b.claim("w", 1, 30, time.time())
        assert await b.finish([done("a", row.run_id, token=row.token)]) == [True]
        await b.drop()
        await b.disconnect()
        assert await client.ping()  # the user's client is not closed
    finally:
        await client.aclose()
    decoding = RedisCluster.from_url(f"redis://{address}", decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        RedisBackend(decoding, "q")
    await decoding.aclose()


async def test_a_queue_whose_slot_moves_follows_it_with_its_scripts_and_wake_ups(
    url: str, masters: dict[str, Redis]
) -> None:
    b = RedisBackend.from_url(url, "q")
    other = RedisBackend.from_url(url, "q")
    ready = b.keys.key("ready")
    try:
        await b.connect()
        await b.enqueue([job("a"), job("b")])
        [held] = await b.claim("w", 1, 30, time.time())
        await b.wait_for_finish(["a"], 5)  # the listener is subscribed
        source = await owner(masters, ready)
        target = next(node for node in masters if node != source)
        await masters[target].execute_command("FUNCTION", "FLUSH")  # as a new node would be

        await move_slot(masters, ready, target)

        # A pipelined call: every frame answered MOVED, sent again to the new master,
        # whose missing function library is loaded on the way.
        many = [job(f"k{i}") for i in range(1200)]
        assert await b.enqueue(many) == [True] * 1200
        port = masters[target].connection_pool.connection_kwargs["port"]
        assert b.describe()["address"] == f"127.0.0.1:{port}"
        assert await masters[target].execute_command("FUNCTION", "LIST")
        assert (
            await masters[source].execute_command(
                "CLUSTER", "COUNTKEYSINSLOT", key_slot(ready.encode())
            )
            == 0
        )
        # The fencing of the claim made before the move holds after it.
        renewal = await b.renew("w", [Lease(held.key, held.token)], 30, time.time())
        assert renewal.lost == []
        assert await b.finish([done("a", held.run_id, token="999999")]) == [False]
        # Scripts unknown on the new master (EVALSHA after NOSCRIPT) are loaded again.
        b._scripts._use(None)
        [second] = await b.claim("w", 1, 30, time.time())
        assert second.key == "b"
        # Pub/sub and wake-ups on the new master.
        await wait_until(lambda: b._listener._subscribed.is_set(), message="listener moved")
        waiter = asyncio.create_task(b.wait_for_finish(["a"], 30))
        assert await b.finish([done("a", held.run_id, token=held.token)]) == [True]
        await asyncio.wait_for(waiter, 10)
        assert len(await b.claim("w", 2000, 30, time.time())) == 1200
        await masters[target].delete(b.keys.key("wake"))  # the tokens of the enqueues above
        sleeper = asyncio.create_task(b.wait_for_work(30))
        await wait_until(lambda: _blocked_clients(masters[target]), message="BLPOP on target")
        await other.connect()  # located on the new master at once
        await other.enqueue([job("late")])
        await asyncio.wait_for(sleeper, 10)
    finally:
        await b.drop()
        await b.disconnect()
        await other.disconnect()


async def test_a_call_made_while_the_queue_s_slot_migrates_waits_for_the_end(
    url: str, masters: dict[str, Redis]
) -> None:
    b = RedisBackend.from_url(url, "q")
    ready = b.keys.key("ready")
    try:
        await b.connect()
        await b.enqueue([job("a")])
        source = await owner(masters, ready)
        target = next(node for node in masters if node != source)
        before = await tryagain_replies(masters[source])
        await start_moving(masters, ready, target)
        # Some of the claim's keys have moved, others not: the source answers TRYAGAIN
        # (the script does not run), and the call is sent again until the move is over.
        claim = asyncio.create_task(b.claim("w", 1, 30, time.time()))
        await wait_until(
            lambda: _more(tryagain_replies(masters[source]), before), message="TRYAGAIN"
        )
        assert not claim.done()
        await finish_moving(masters, ready, source, target)
        [row] = await asyncio.wait_for(claim, 10)
        assert row.key == "a"
        assert await b.finish([done("a", row.run_id, token=row.token)]) == [True]
    finally:
        await b.drop()
        await b.disconnect()


async def _more(count: Any, than: int) -> bool:
    return bool(await count > than)


def test_cluster_urls_name_the_nodes_and_their_settings() -> None:
    url = "rediss+cluster://user:secret@10.0.0.1:7000,[::1]:7001?socket_timeout=3&prefix=p"
    backend = RedisBackend.from_url(url, "q", max_connections=9)
    topology = backend._topology
    assert isinstance(topology, ClusterTopology) and backend.keys.prefix == "p"
    cluster = topology.cluster
    assert [(n.host, n.port) for n in cluster.nodes_manager.startup_nodes.values()] == [
        ("10.0.0.1", 7000),
        ("::1", 7001),
    ]
    settings = cluster.connection_kwargs
    assert (settings["username"], settings["password"]) == ("user", "secret")
    assert settings["socket_timeout"] == 3.0 and settings["connection_class"] is SSLConnection
    assert topology._pool_kwargs["max_connections"] == 9
    assert backend.describe() == {
        "engine": "redis",
        "address": None,  # until connected
        "db": 0,
        "prefix": "p",
        "queue": "q",
        "deployment": "cluster",
    }


@pytest.fixture(scope="module")
def replicated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A cluster of its own whose masters have a replica each, failing over within a
    second."""
    reason = missing_tools()
    if reason is not None:
        unavailable(reason)
    with redis_cluster(
        tmp_path_factory.mktemp("replicated"), replicas=1, node_timeout_ms=1000
    ) as ports:
        yield cluster_url(ports)


@pytest.mark.slow
async def test_a_master_failover_in_the_middle_of_a_drain_loses_no_job(
    replicated_cluster: str,
) -> None:
    url = f"{replicated_cluster}?prefix=test-{uuid.uuid4().hex[:10]}"
    queue = Queue.from_url(url)
    await queue.connect()
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    keys = [f"job-{n}" for n in range(120)]
    options: dict[str, Any] = {"retries": 3, "timeout": 60}
    for key in keys:
        await queue.enqueue("sleep", key=key, seconds=0.1, value=key, **options)
    master = backend.describe()["address"]
    try:
        async with WorkerProcess(url, lease_s=2.0, concurrency=4) as worker:
            await wait_until(lambda: _completed(queue, 10), message="the drain under way")
            host, port = master.rsplit(":", 1)
            doomed = Redis(host=host, port=int(port))
            with contextlib.suppress(RedisConnectionError):
                await doomed.execute_command("SHUTDOWN", "NOSAVE")  # the queue's master dies
            await doomed.aclose()
            counts = await _counts(queue)
            assert counts is None or counts < len(keys)  # in the middle of the drain
            later = [f"later-{n}" for n in range(10)]
            await wait_until(lambda: _enqueued(queue, later), timeout=60, message="new master")
            jobs = await queue.wait(keys + later, timeout=90)
            assert worker.alive, worker.output()
            output = worker.output()
        assert backend.describe()["address"] != master  # its replica took over
        for job in jobs:
            assert job.status == Status.COMPLETE and job.result == job.key, (job, output)
            runs, _ = await backend.list_runs(RunFilter(key=job.key), 0, 10)
            assert [run.status for run in runs].count("complete") == 1, (job.key, runs)
    finally:
        await backend.drop()
        await queue.disconnect()


async def _counts(queue: Queue) -> int | None:
    try:
        counts = await queue.backend.count([Status.COMPLETE.value])
    except BackendError:
        return None  # the failover is under way
    return counts[Status.COMPLETE.value]


async def _completed(queue: Queue, at_least: int) -> bool:
    return (await _counts(queue) or 0) >= at_least


async def _enqueued(queue: Queue, keys: list[str]) -> bool:
    try:
        for key in keys:
            await queue.enqueue("sleep", key=key, seconds=0.01, value=key, retries=3)
    except BackendError:
        return False
    return True


async def test_a_redis_queue_built_on_a_cluster_client(url: str) -> None:
    from conveyor.queue.redis import RedisQueue

    address = url.split("://")[1].split(",")[0]
    client = RedisCluster.from_url(f"redis://{address}")
    queue = RedisQueue(client, name="q", prefix=prefix_of(url))
    try:
        assert queue.redis is client
        job = await queue.enqueue("echo", key="a", value=1)  # connects on first use
        assert job is not None and (await queue.job("a")) is not None
        assert Queue.from_url(url, name="q").__class__ is RedisQueue
    finally:
        await queue.backend.drop()
        await queue.disconnect()  # closes the client, as SAQ's RedisQueue does
