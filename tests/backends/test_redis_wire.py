"""The Redis backend's own script calls: packing, its dedicated connection and the pool,
pipelined bulk enqueues, NOSCRIPT, cancellation, timeouts and closing."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import DataError

from backends import test_redis
from backends.test_redis import (
    done,
    free_port,
    job,
    pings,
    redis_server,
    require_redis,
)
from conveyor.backends.base import LogLine, NewJob
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.backend import ENQUEUE_CHUNK, _job_args, _pack_job
from conveyor.backends.redis.scripts import Scripts
from conveyor.backends.redis.wire import READ_SIZE, pack
from conveyor.errors import BackendError
from conveyor.testing import wait_until
from conveyor.testing.backends import isolated_url

backend = test_redis.backend  # the fixture: a connected backend with its own prefix


@pytest.mark.parametrize(
    "value", ["plain", "ünï €", "", b"\x00\xff raw", 0, -17, 2**70, 1.5, -0.25, 1e-07]
)
def test_arguments_are_packed_as_redis_py_packs_them(value: Any) -> None:
    theirs = b"".join(ConnectionPool().make_connection().pack_command("ECHO", value))
    assert b"*2\r\n" + pack(["ECHO", value]) == theirs


@pytest.mark.parametrize("value", [True, None, object()])
def test_unpackable_arguments_are_refused(value: Any) -> None:
    with pytest.raises(DataError):
        pack([value])


@pytest.mark.parametrize(
    "new",
    [
        NewJob("k", "fn", '{"a":1}'),
        NewJob("ünï", "fñ", "€ payload".encode(), priority=-3, due=1.5e9, group_key="gü"),
        NewJob("k", "fn", b"", priority=2**70, due=0.25),
        NewJob("k", "fn", b"x", priority=1.5),  # type: ignore[arg-type]
        NewJob("k", "fn", bytearray(b"x")),  # type: ignore[arg-type]
        NewJob("k", "fn", b"x", once="mark", once_ttl=0.0015),
    ],
    ids=["json", "unicode-group-due", "big-int", "float-priority", "bytearray", "once"],
)
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_a_job_is_packed_as_its_general_arguments_are(new: NewJob, encoding: str) -> None:
    # The one-step packing of the usual job must send what the general packing sends.
    client = Redis(encoding=encoding)
    scripts = Scripts(client, ("k",), ("base",))
    assert _pack_job(new, scripts) == scripts.pack(_job_args(new))


def test_a_bool_priority_is_refused_as_redis_py_refuses_it() -> None:
    scripts = Scripts(Redis(), ("k",), ("base",))
    with pytest.raises(DataError):
        _pack_job(NewJob("k", "fn", b"", priority=True), scripts)


async def test_replies_larger_than_one_read_arrive_whole(backend: RedisBackend) -> None:
    # Reads are capped below glibc's mapping threshold, on the own connection and on
    # borrowed ones: a reply of several reads still arrives whole on both.
    big = {f"k{i}": bytes([i]) * (3 * READ_SIZE + i) for i in range(3)}
    jobs = [NewJob(key, "fn", payload) for key, payload in big.items()]
    assert await backend.enqueue(jobs) == [True] * 3
    own = backend._scripts.lines._own
    assert own is not None and own.conn._writer.transport.max_size == READ_SIZE
    single = await backend.get(["k0"])  # the own connection
    together = await asyncio.gather(*(backend.get([key]) for key in big))  # and borrowed ones
    assert single[0] is not None and single[0].payload == big["k0"]
    assert [rows[0].payload if rows[0] else None for rows in together] == list(big.values())
    borrowed = backend._redis.connection_pool._available_connections
    assert borrowed and {c._writer.transport.max_size for c in borrowed} == {READ_SIZE}


async def test_concurrent_calls_all_complete(backend: RedisBackend) -> None:
    # One call takes the backend's own connection; the others borrow from the pool.
    keys = [f"k{i}" for i in range(60)]
    results = await asyncio.gather(*(backend.enqueue([job(k)]) for k in keys))
    assert results == [[True]] * len(keys)
    rows = await backend.get(keys)
    assert [r.key if r else None for r in rows] == keys
    assert (await backend.count(["queued"]))["queued"] == len(keys)


async def test_a_bulk_spanning_chunks_keeps_order_and_dedups(backend: RedisBackend) -> None:
    n = 2 * ENQUEUE_CHUNK + 7
    jobs = [job(f"j{i:05d}") for i in range(n)]
    # The same key again in a later chunk, and a once mark used in two chunks.
    jobs.append(job("j00003"))
    jobs[5] = NewJob("m1", "fn", b"", once="slot", once_ttl=60)
    jobs[ENQUEUE_CHUNK + 5] = NewJob("m2", "fn", b"", once="slot", once_ttl=60)
    flags = await backend.enqueue(jobs)
    rejected = [i for i, ok in enumerate(flags) if not ok]
    assert len(flags) == len(jobs) and rejected == [ENQUEUE_CHUNK + 5, len(jobs) - 1]
    claimed = await backend.claim("w", n, 30, time.time())
    expected = [j.key for i, j in enumerate(jobs) if i not in rejected]
    assert [r.key for r in claimed] == expected


#: Options of a redis-server without functions (as Redis 6 is): FUNCTION and FCALL unknown.
NO_FUNCTIONS = ("--rename-command", "FUNCTION", "", "--rename-command", "FCALL", "")


@pytest.mark.parametrize("functions", [True, False], ids=["function-library", "evalsha"])
async def test_forgotten_scripts_are_reloaded_and_every_call_runs_once(functions: bool) -> None:
    # The server forgets the scripts (FUNCTION FLUSH / SCRIPT FLUSH, as a restart without
    # persistence does): single and pipelined calls load them again and run once.
    port = free_port()
    probe = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    b = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0?prefix=noscript", "q")

    async def forget() -> None:
        await (probe.function_flush() if functions else probe.script_flush())

    try:
        with redis_server(port, *(() if functions else NO_FUNCTIONS)):
            await wait_until(lambda: pings(probe), message="redis-server up")
            await b.connect()
            assert b._scripts.functions is functions
            # A single call (its own short path) reloads too, and runs once.
            await forget()
            assert await b.enqueue([job("single")]) == [True]
            await forget()
            assert [r.key for r in await b.claim("w", 5, 30, time.time())] == ["single"]
            await forget()
            n = 2 * ENQUEUE_CHUNK + 1
            assert await b.enqueue([job(f"j{i}") for i in range(n)]) == [True] * n
            rows = await b.claim("w", n, 30, time.time())
            assert [r.key for r in rows] == [f"j{i}" for i in range(n)]
            assert b._scripts.functions is functions
    finally:
        await b.disconnect()
        await probe.aclose()


async def test_a_server_without_functions_in_place_of_one_with_them_gets_scripts() -> None:
    # A failover or a restart onto a server that has no FCALL (Redis 6): the calls made
    # for the function library are answered "unknown command"; they load plain scripts
    # and carry on.
    port = free_port()
    probe = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    b = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0?prefix=downgrade", "q")
    try:
        with redis_server(port) as first:
            await wait_until(lambda: pings(probe), message="redis-server up")
            await b.connect()
            assert b._scripts.functions
            assert await b.enqueue([job("before")]) == [True]
            first.kill()
            first.wait()
        with redis_server(port, *NO_FUNCTIONS):
            await wait_until(lambda: pings(probe), message="redis-server up again")

            async def enqueued() -> bool:
                try:
                    return await b.enqueue([job("after")]) == [True]
                except BackendError:
                    return False  # the drop is reported once, then the client reconnects

            await wait_until(enqueued, message="an enqueue on the new server")
            assert not b._scripts.functions
            assert [r.key for r in await b.claim("w", 5, 30, time.time())] == ["after"]
    finally:
        await b.disconnect()
        await probe.aclose()


async def test_queues_past_the_librarys_memory_of_them_keep_their_own_keys(
    backend: RedisBackend,
) -> None:
    # The function library keeps each queue's key names, up to 256 queues, then starts
    # over; queues beyond that, and the first ones again, still use their own keys.
    prefix = backend.keys.prefix
    queues = [RedisBackend(backend._redis, f"q{i}", prefix=prefix) for i in range(300)]
    try:
        for rounds in range(2):
            for i, queue in enumerate(queues):
                await queue.connect()
                new = NewJob(f"k{rounds}", "fn", f"q{i}".encode())
                assert await queue.enqueue([new]) == [True]
                assert (await queue.count(["queued"]))["queued"] == rounds + 1
                rows = await queue.get([f"k{rounds}"])
                assert rows[0] is not None and rows[0].payload == f"q{i}".encode()
                await queue.disconnect()
    finally:
        for queue in queues:
            await queue.disconnect()


@pytest.mark.parametrize("size", [1, 300], ids=["single", "pipelined"])
async def test_cancelled_calls_leave_no_reply_behind(backend: RedisBackend, size: int) -> None:
    # A call cancelled between sending and reading must not hand its reply to the next.
    await backend.enqueue([job("a"), job("b", priority=1)])
    for spins in range(12):
        task = asyncio.create_task(backend.enqueue([job(f"x{i}") for i in range(size)]))
        for _ in range(spins):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        [a, b] = await backend.get(["a", "b"])
        assert (a and a.payload, b and b.payload) == (b"a", b"b")
        assert set(await backend.count(["queued", "active"])) == {"queued", "active"}


async def test_a_server_that_stops_answering_times_out_then_recovers() -> None:
    port = free_port()
    probe = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    url = f"redis://127.0.0.1:{port}/0?prefix=stall&socket_timeout=0.3"
    b = RedisBackend.from_url(url, "q")
    try:
        with redis_server(port, "--enable-debug-command", "yes"):
            await wait_until(lambda: pings(probe), message="redis-server up")
            await b.connect()
            assert await b.enqueue([job("before")]) == [True]
            stall = asyncio.create_task(probe.execute_command("DEBUG", "SLEEP", "3"))
            error = await wait_until(lambda: _enqueue_error(b), message="a timed-out call")
            assert "Timeout" in str(error)
            await stall
            await wait_until(lambda: _enqueues(b, "after"), message="enqueue after the stall")
            rows = await b.claim("w", 10, 30, time.time())
            assert {"before", "after"} <= {r.key for r in rows}
            await b.finish([done(r.key, r.run_id) for r in rows])
    finally:
        await b.disconnect()
        await probe.aclose()


async def _enqueue_error(b: RedisBackend) -> BackendError | None:
    try:
        await b.enqueue([job("during")])
    except BackendError as exc:
        return exc
    return None


async def _enqueues(b: RedisBackend, key: str) -> bool:
    try:
        return await b.enqueue([job(key)]) == [True]
    except BackendError:
        return False


async def test_a_client_with_its_own_pool_kind_and_resp3_works(tmp_path: Path) -> None:
    require_redis()

    class CustomPool(ConnectionPool):
        pass

    url = isolated_url("redis", tmp_path)
    for client in (
        Redis(connection_pool=CustomPool.from_url(url.split("?")[0])),
        Redis.from_url(url.split("?")[0], protocol=3),
    ):
        b = RedisBackend.from_url(url, "q", redis=client)
        await b.connect()
        try:
            assert await b.enqueue([job("a"), job("a")]) == [True, False]
            rows = await b.claim("w", 5, 30, time.time())
            await b.finish([done(r.key, r.run_id) for r in rows])
            [row] = await b.get(["a"])
            assert row is not None and row.status == "complete"
        finally:
            await b.drop()
            await b.disconnect()
            await client.aclose()
            await client.connection_pool.disconnect()  # a pool given to a client stays open


async def test_disconnect_leaves_no_connection_open(tmp_path: Path) -> None:
    require_redis()
    b = RedisBackend.from_url(isolated_url("redis", tmp_path), "q")
    await b.connect()
    await asyncio.gather(*(b.enqueue([job(f"k{i}")]) for i in range(5)))  # pool + own line
    await b.wait_for_work(1)  # the blocking pool's BLPOP takes a wake-up token
    await b.wait_for_finish(["k0"], 0.01)  # the listener's connection
    await b.drop()
    await b.disconnect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del b
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


async def test_log_lines_of_interleaved_runs_land_in_their_own_runs(backend: RedisBackend) -> None:
    await backend.enqueue([job("a"), job("b")])
    runs = [r.run_id or "" for r in await backend.claim("w", 2, 30, time.time())]
    lines = [
        LogLine(runs[i % 2], i // 2 + 1, 1.5 + i, "INFO", f"\x1f{i}", b'{"n": 1}' * i)
        for i in range(7)
    ]
    await backend.append_logs(lines[::-1])
    for index, run_id in enumerate(runs):
        assert await backend.read_logs(run_id, 0, 10) == lines[index::2]
