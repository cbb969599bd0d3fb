"""Cross-process wake-ups of the SQLite backend through Unix datagram sockets.

The waiters here poll only once a minute (``poll_interval=60``) and wait 30 s at most, so
a waiter that wakes at all was woken by a datagram: the tests assert on that, never on a
tight time. Also: dead processes' sockets are deleted, a full socket never blocks a
writer, the fallbacks (a private temporary directory, then the poll alone) are taken when
the directory beside the database cannot be used, and queues sharing a file share sockets
without stealing each other's jobs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from conveyor.backends.base import NewJob
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.doorbell import (
    MAX_SOCKET_PATH,
    Doorbell,
    directories_for,
    kernel_tag,
)
from conveyor.testing.backends import isolated_url
from conveyor.testing.helpers import wait_until

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "AF_UNIX") or os.name != "posix", reason="needs Unix datagram sockets"
)

# The most a waiter waits here; the poll would only look after a minute.
LONG_WAIT = 30.0
NO_POLL = "poll_interval=60"

# A worker process that would notice work only by its poll (once a minute) or by a
# datagram: its own idle wait is a minute too.
_WORKER = """
import asyncio, sys
from conveyor.queue import Queue
from conveyor.worker import Worker

async def touch(ctx):
    return "ran"

async def main(url):
    queue = Queue.from_url(url, name="wake")
    worker = Worker(queue, [("touch", touch)], dequeue_timeout=60)
    await worker.start()

asyncio.run(main(sys.argv[1]))
"""

# Waits for work once (binding its socket), then prints "woken"; or is killed meanwhile.
_WAITER = """
import asyncio, sys
from conveyor.backends.sqlite import SQLiteBackend

async def main(url):
    backend = SQLiteBackend.from_url(url, "wake")
    await backend.connect()
    await backend.wait_for_work(30)
    print("woken", flush=True)
    await backend.disconnect()

asyncio.run(main(sys.argv[1]))
"""


def _sockets(database: Path) -> list[Path]:
    return [path for d in directories_for(database) if d.is_dir() for path in d.glob("*.sock")]


def _url(directory: Path, options: str = NO_POLL) -> str:
    return f"{isolated_url('sqlite', directory)}?{options}"


@pytest.fixture(autouse=True)
def short(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short directory, for the databases and as the temporary directory (of the
    processes started here too): pytest's own paths are too long for AF_UNIX sockets."""
    directory = Path(tempfile.mkdtemp(prefix="cw-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    monkeypatch.setenv("TMPDIR", str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def producer(short: Path) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend.from_url(_url(short), "wake")
    await backend.connect()
    yield backend
    await backend.drop()


async def _start_waiting(script: str, database: Path) -> tuple[asyncio.subprocess.Process, Path]:
    """Start ``script`` on ``database``; return it and its socket, once it waits."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, f"sqlite:///{database}?{NO_POLL}"
    )
    try:
        [address] = await wait_until(
            lambda: _sockets(database), LONG_WAIT, message="the process's socket"
        )
    except BaseException:
        await _stop(process)
        raise
    return process, address


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


@pytest.mark.slow
async def test_an_idle_worker_process_is_woken_by_a_datagram(
    producer: SQLiteBackend,
) -> None:
    worker, address = await _start_waiting(_WORKER, producer.settings.path)
    try:
        assert address.name.startswith(f"{kernel_tag()}-{worker.pid}-")
        assert address.parent == directories_for(producer.settings.path)[0]  # beside it
        enqueued = time.monotonic()
        await producer.enqueue([NewJob("job", "touch", '{"function": "touch", "key": "job"}')])

        async def done() -> bool:
            [row] = await producer.get(["job"])
            return row is not None and row.status == "complete"

        await wait_until(done, LONG_WAIT, message="the job to run")
        # The worker's own wait and its poll would each have taken a minute.
        assert time.monotonic() - enqueued < LONG_WAIT
    finally:
        await _stop(worker)


@pytest.mark.slow
async def test_a_waiter_of_another_process_is_woken_when_a_job_finishes(short: Path) -> None:
    url = _url(short)
    waiter = SQLiteBackend.from_url(url, "wake")
    await waiter.connect()
    try:
        await waiter.enqueue([NewJob("k", "f", "p")])
        finisher = """
import asyncio, sys, time
from conveyor.backends.base import RunEnd, Transition
from conveyor.backends.sqlite import SQLiteBackend

async def main(url):
    backend = SQLiteBackend.from_url(url, "wake")
    await backend.connect()
    [row] = await backend.claim("w", 1, 30, time.time())
    sys.stdin.readline()
    run = RunEnd(row.run_id, "complete", int(time.time() * 1000))
    await backend.finish([Transition("k", "done", "complete", run=run, token=row.token)])
    await backend.disconnect()

asyncio.run(main(sys.argv[1]))
"""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", finisher, url, stdin=asyncio.subprocess.PIPE
        )
        assert process.stdin is not None

        async def claimed() -> bool:
            [row] = await waiter.get(["k"])
            return row is not None and row.status == "active"

        await wait_until(claimed, LONG_WAIT, message="the other process's claim")
        waiting = asyncio.create_task(waiter.wait_for_finish(["k"], LONG_WAIT))
        await wait_until(lambda: _sockets(waiter.settings.path), message="the waiter's socket")
        process.stdin.write(b"finish\n")
        await process.stdin.drain()
        started = time.monotonic()
        status = None
        while status != "complete":
            await waiting
            assert time.monotonic() - started < LONG_WAIT - 1, "not woken by the finish"
            [row] = await waiter.get(["k"])
            status = row.status if row else None
            waiting = asyncio.create_task(waiter.wait_for_finish(["k"], LONG_WAIT))
        waiting.cancel()
        assert await process.wait() == 0
    finally:
        await waiter.drop()


@pytest.mark.slow
async def test_a_killed_processs_socket_is_deleted_by_the_next_writer(
    producer: SQLiteBackend,
) -> None:
    waiter, address = await _start_waiting(_WAITER, producer.settings.path)
    try:
        os.kill(waiter.pid, signal.SIGKILL)
        await waiter.wait()
        assert address.exists()  # nobody cleaned up after it
        await producer.enqueue([NewJob("job", "f", "p")])
        assert not address.exists()
    finally:
        await _stop(waiter)


def test_a_socket_whose_queue_is_full_never_blocks_nor_is_deleted(short: Path) -> None:
    beside, private = short / "db-wake", short / "private"
    ringer = Doorbell(beside, private, "t")
    sleeper = Doorbell(beside, private, "t")
    assert sleeper.bind() is not None and sleeper.address is not None
    try:
        started = time.monotonic()
        reached = [ringer.ring(["work"]) for _ in range(500)]  # nobody reads them
        assert time.monotonic() - started < LONG_WAIT
        assert reached[0] == 1 and reached[-1] == 0  # its queue filled up, and stayed full
        assert Path(sleeper.address).exists()  # alive: not taken for a dead process's
        assert sleeper.drain() == {"work"}
        assert ringer.ring(["finish"]) == 1  # drained: reached again
    finally:
        ringer.close()
        sleeper.close()


def test_a_writer_does_not_ring_its_own_socket(short: Path) -> None:
    beside, private = short / "db-wake", short / "private"
    one, other = Doorbell(beside, private, "t"), Doorbell(beside, private, "t")
    try:
        one.bind()
        assert one.ring(["work"]) == 0  # its waiters are woken in-process
        other.bind()
        assert one.ring(["work"]) == 1
        assert other.drain() == {"work"} and one.drain() == set()
        foreign = Doorbell(beside, private, "another-host")
        assert foreign.ring(["work"]) == 0  # another kernel's sockets are not its own
        foreign.close()
    finally:
        one.close()
        other.close()
    assert not beside.exists()  # close() deletes the socket, and the directory left empty


async def _woken_across_backends(url: str, sockets: int = 1) -> tuple[SQLiteBackend, float]:
    """Wait on one backend, enqueue on another (another connection) once ``sockets`` are
    bound; return the waiter and how long it took to wake."""
    waiter = SQLiteBackend.from_url(url, "wake")
    other = SQLiteBackend.from_url(url, "wake")
    await waiter.connect()
    await other.connect()
    try:
        waiting = asyncio.create_task(waiter.wait_for_work(LONG_WAIT))
        # Its socket is bound when it starts waiting (a commit before that is the poll's).
        await wait_until(lambda: len(_sockets(waiter.settings.path)) == sockets)
        started = time.monotonic()
        await other.enqueue([NewJob("job", "f", "p")])
        await waiting
        elapsed = time.monotonic() - started
        assert [row.key for row in await waiter.claim("w", 1, 30, time.time())] == ["job"]
        return waiter, elapsed
    finally:
        await other.disconnect()


async def test_the_socket_goes_to_a_private_directory_when_the_one_beside_is_unusable(
    short: Path,
) -> None:
    url = _url(short)
    path = SQLiteBackend.from_url(url, "wake").settings.path
    beside, private = directories_for(path)
    beside.write_text("a file where the directory would be")
    waiter, elapsed = await _woken_across_backends(url)
    try:
        address = waiter._doorbell.address if waiter._doorbell else None
        assert address is not None and Path(address).parent == private
        assert elapsed < LONG_WAIT - 1  # woken by a datagram, not by the minute's poll
        assert oct(private.stat().st_mode & 0o777) == oct(0o700)
    finally:
        await waiter.drop()
    assert not private.exists()  # nor is its directory left behind


async def test_a_database_path_too_long_for_a_socket_uses_the_private_directory(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    url = f"sqlite:///{deep / 'jobs.db'}?{NO_POLL}"
    beside, private = directories_for(deep / "jobs.db")
    assert len(os.fsencode(beside)) > MAX_SOCKET_PATH
    assert len(os.fsencode(private)) < MAX_SOCKET_PATH - 40
    waiter, elapsed = await _woken_across_backends(url)
    try:
        address = waiter._doorbell.address if waiter._doorbell else None
        assert address is not None and Path(address).parent == private
        assert elapsed < LONG_WAIT - 1
    finally:
        await waiter.drop()


async def test_without_a_usable_directory_the_poll_still_wakes_waiters(short: Path) -> None:
    url = _url(short, "poll_interval=0.02")
    path = SQLiteBackend.from_url(url, "wake").settings.path
    beside, private = directories_for(path)
    assert private.parent == short
    beside.write_text("not a directory")
    private.write_text("not a directory either")
    waiter, _ = await _woken_across_backends(url, sockets=0)
    try:
        assert waiter._doorbell is not None and waiter._doorbell.address is None
    finally:
        await waiter.drop()


async def test_a_private_directory_of_someone_else_is_not_used(short: Path) -> None:
    beside, private = short / "beside-is-a-file", short / "shared"
    beside.write_text("")
    private.mkdir(mode=0o777)
    private.chmod(0o777)  # anyone may write into it: not private
    doorbell = Doorbell(beside, private, "t")
    try:
        assert doorbell.bind() is None and doorbell.address is None
        assert doorbell.ring(["work"]) == 0
    finally:
        doorbell.close()


async def test_wakeup_poll_binds_no_socket(short: Path) -> None:
    url = _url(short, "poll_interval=0.02&wakeup=poll")
    waiter, _ = await _woken_across_backends(url, sockets=0)
    try:
        assert waiter._doorbell is None and _sockets(waiter.settings.path) == []
    finally:
        await waiter.drop()


async def test_queues_sharing_a_file_are_woken_and_claim_only_their_own_jobs(
    short: Path,
) -> None:
    url = _url(short)
    waiters = {name: SQLiteBackend.from_url(url, name) for name in ("a", "b")}
    producers = {name: SQLiteBackend.from_url(url, name) for name in ("a", "b")}
    for backend in (*waiters.values(), *producers.values()):
        await backend.connect()
    try:
        for name in ("a", "b", "a"):
            waiting = {
                n: asyncio.create_task(w.wait_for_work(LONG_WAIT)) for n, w in waiters.items()
            }
            await wait_until(lambda: len(_sockets(waiters["a"].settings.path)) == 2)
            started = time.monotonic()
            await producers[name].enqueue([NewJob(f"{name}-{started}", "f", "p")])
            await waiting[name]
            assert time.monotonic() - started < LONG_WAIT - 1
            for n, w in waiters.items():
                rows = await w.claim("w", 10, 30, time.time())
                assert [row.key for row in rows] == ([f"{name}-{started}"] if n == name else [])
            for task in waiting.values():
                task.cancel()
            await asyncio.gather(*waiting.values(), return_exceptions=True)
        assert len(_sockets(waiters["a"].settings.path)) == 2  # one per waiting backend
    finally:
        for backend in (*waiters.values(), *producers.values()):
            await backend.drop()
    assert _sockets(waiters["a"].settings.path) == []


async def test_a_datagram_between_two_waits_wakes_the_next_wait(short: Path) -> None:
    url = _url(short)
    waiter = SQLiteBackend.from_url(url, "wake")
    other = SQLiteBackend.from_url(url, "wake")
    await waiter.connect()
    await other.connect()
    try:
        await waiter.wait_for_work(0.01)  # binds its socket; nobody waits after this
        assert len(_sockets(waiter.settings.path)) == 1
        await other.enqueue([NewJob("between", "f", "p")])  # as if while it claimed
        started = time.monotonic()
        await waiter.wait_for_work(LONG_WAIT)
        assert time.monotonic() - started < LONG_WAIT - 1, "the datagram was lost"
        assert [row.key for row in await waiter.claim("w", 1, 30, time.time())] == ["between"]
    finally:
        await other.disconnect()
        await waiter.drop()
