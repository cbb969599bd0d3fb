"""Faster recovery on Redis: the leases of a worker whose process died (its presence
connection gone) end at once; a lease whose owner may be alive never does."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import conveyor
from backends.test_redis import free_port, job, kind_url, pings, redis_server
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.presence import client_name
from conveyor.testing import wait_until

#: A worker process: claims one job for the worker id "doomed" with a long lease, says so,
#: then holds it until it is killed.
HOLDER = textwrap.dedent(
    """
    import asyncio, sys, time
    from conveyor.backends.redis import RedisBackend

    async def main():
        b = RedisBackend.from_url(sys.argv[1], "q")
        await b.connect()
        rows = await b.claim("doomed", 1, 300, time.time())
        print("claimed", *[r.key for r in rows], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


#: The source tree this test imports, for the worker process.
SOURCE = str(Path(conveyor.__file__).resolve().parents[1])


async def start_holder(url: str) -> asyncio.subprocess.Process:
    src = SOURCE
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, url, stdout=asyncio.subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line.split() == [b"claimed", b"a"], line
    return process


@pytest.fixture(params=["redis", "redis-cluster"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    url = kind_url(request, request.param, tmp_path)
    yield url
    b = RedisBackend.from_url(url, "q")
    await b.drop()
    await b.disconnect()


async def test_the_leases_of_a_killed_worker_end_at_once(url: str) -> None:
    checker = RedisBackend.from_url(url, "q")
    await checker.connect()
    process = None
    try:
        await checker.enqueue([job("a")])
        process = await start_holder(url)
        names = await checker._redis.execute_command("CLIENT", "LIST")
        assert client_name(checker.keys.base, "doomed").encode() in names
        assert await checker.expire_dead_leases(time.time()) == 0  # alive: left alone
        assert await checker.recover("w2", 10, 30, time.time()) == []
        process.send_signal(signal.SIGKILL)
        await process.wait()
        process = None
        ended = await wait_until(
            lambda: checker.expire_dead_leases(time.time()), message="the dead lease ended"
        )
        assert ended == 1
        # Taken over now, not when its 300 s lease would have run out.
        [row] = await checker.recover("w2", 10, 30, time.time())
        assert (row.key, row.worker_id) == ("a", "w2")
        assert await checker.expire_dead_leases(time.time()) == 0  # its record is gone
    finally:
        if process is not None:
            process.kill()
            await process.wait()
        await checker.disconnect()


async def test_leases_of_live_or_unknown_owners_are_never_ended(url: str) -> None:
    b = RedisBackend.from_url(url, "q")
    other = RedisBackend.from_url(url, "q")
    try:
        await b.connect()
        await other.connect()
        await b.enqueue([job(k) for k in ("live", "norecord", "oldserver")])
        now = time.time()
        [live] = await b.claim("live-worker", 1, 300, now)
        [norecord] = await other.claim("no-record", 1, 300, now)
        [old] = await other.claim("old-server", 1, 300, now)
        presence = b.keys.key("presence")
        await b._redis.hdel(presence, "no-record")  # as a worker of an older version
        await b._redis.hset(presence, "old-server", "0123456789abcdef 1")  # another run_id
        # Their connections are closed: only the records can tell, and they cannot.
        await other.disconnect()
        assert await b.expire_dead_leases(time.time()) == 0
        assert await b.recover("w2", 10, 30, time.time() + 1) == []
        assert [live.key, norecord.key, old.key] == ["live", "norecord", "oldserver"]
        # A clean stop drops the record: its later leases are not "dead" either.
        await b.delete_worker("live-worker")
        assert await b._redis.hget(presence, "live-worker") is None
        listing = await b._redis.execute_command("CLIENT", "LIST")
        assert client_name(b.keys.base, "live-worker").encode() not in listing
    finally:
        await b.disconnect()
        await other.disconnect()


async def test_nothing_is_ended_where_death_cannot_be_told() -> None:
    # A server that closes idle connections itself, and a user whose ACL refuses CLIENT LIST.
    port = free_port()
    probe = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    b = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0?prefix=presence", "q")
    limited = RedisBackend.from_url(
        f"redis://limited:pw@127.0.0.1:{port}/0?prefix=presence&loading_timeout=5", "q"
    )
    try:
        with redis_server(port):
            await wait_until(lambda: pings(probe), message="redis-server up")
            await probe.acl_setuser(
                "limited", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                commands=["+@all", "-client|list"],
            )  # fmt: skip
            await b.connect()
            await b.enqueue([job("a")])
            await b.claim("ghost", 1, 300, time.time())
            run_id = (await probe.info("server"))["run_id"]
            await probe.hset(b.keys.key("presence"), "ghost", f"{run_id} 999999")  # gone
            await limited.connect()
            assert await limited.expire_dead_leases(time.time()) == 0
            await probe.config_set("timeout", 300)
            assert await b.expire_dead_leases(time.time()) == 0
            await probe.config_set("timeout", 0)
            assert await b.expire_dead_leases(time.time()) == 1  # the same, when it can tell
    finally:
        await b.disconnect()
        await limited.disconnect()
        await probe.aclose()
