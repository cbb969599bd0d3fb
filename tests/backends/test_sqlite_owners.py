"""Ending the leases of a dead process at once (SQLiteBackend.expire_dead_leases).

Real processes claim through the backend and are killed with SIGKILL; the leases of a
process that may be alive (it exists, or it runs on another host) are never ended.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.base import DetectsDeadOwners, Lease, NewJob, Transition
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.owners import is_gone, this_process
from conveyor.errors import BackendError
from conveyor.testing.backends import isolated_url
from conveyor.testing.helpers import wait_until

LONG_WAIT = 30.0
HAS_PROC = Path("/proc/self/stat").exists()
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="start times come from /proc")
needs_posix = pytest.mark.skipif(os.name != "posix", reason="needs kill(pid, 0)")

# Claims (or recovers) one job for worker "child" with a lease of an hour, prints its key
# and token, then holds the lease until its stdin closes or it is killed.
_HOLDER = """
import asyncio, sys, time
from conveyor.backends.sqlite import SQLiteBackend

async def main(url, how):
    backend = SQLiteBackend.from_url(url, "main")
    await backend.connect()
    take = backend.claim if how == "claim" else backend.recover
    [row] = await take("child", 1, 3600, time.time())
    print(row.key, row.token, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await backend.disconnect()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.fixture
def url(tmp_path: Path) -> str:
    return isolated_url("sqlite", tmp_path)


@pytest.fixture
async def backend(url: str) -> AsyncIterator[SQLiteBackend]:
    b = SQLiteBackend.from_url(url, "main")
    await b.connect()
    yield b
    await b.drop()


async def _holder(url: str, how: str = "claim") -> tuple[asyncio.subprocess.Process, str, str]:
    """A process holding a lease: it, the job's key and the lease's token."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        url,
        how,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), LONG_WAIT)
    assert line, f"the holder exited with {await process.wait()} before claiming"
    key, token = line.decode().split()
    return process, key, token


async def _kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(process.wait(), LONG_WAIT) == -signal.SIGKILL


def _sql(backend: SQLiteBackend, statement: str, *params: Any) -> list[Any]:
    with sqlite3.connect(backend.settings.path) as conn:
        rows = conn.execute(statement, params).fetchall()
    conn.close()
    return rows


def test_the_backend_detects_dead_owners() -> None:
    assert isinstance(SQLiteBackend.from_url("sqlite:///x.db", "q"), DetectsDeadOwners)


@pytest.mark.slow
@needs_posix
async def test_a_killed_process_s_lease_ends_at_once_and_recover_takes_it(
    url: str, backend: SQLiteBackend
) -> None:
    await backend.enqueue([NewJob("k", "f", "p")])
    process, key, token = await _holder(url)
    assert key == "k"
    await _kill(process)
    now = time.time()
    assert await backend.recover("sweeper", 10, 30, now) == []  # its lease runs for an hour
    assert await backend.expire_dead_leases(now) == 1
    [taken] = await backend.recover("sweeper", 10, 30, now)
    assert taken.key == "k" and taken.token not in (None, token)
    # The dead process's token no longer holds anything; the new owner's does.
    assert await backend.finish([Transition("k", "late", "complete", token=token)]) == [False]
    assert await backend.expire_dead_leases(time.time()) == 0
    assert await backend.finish([Transition("k", "done", "complete", token=taken.token)]) == [True]
    # Once no running job points at it, the dead process's row is gone too.
    assert _sql(backend, "SELECT count(*) FROM owners WHERE pid = ?", process.pid) == [(0,)]


@pytest.mark.slow
@needs_posix
async def test_a_process_killed_after_recovering_a_job_loses_it_at_once(
    url: str, backend: SQLiteBackend
) -> None:
    await backend.enqueue([NewJob("k", "f", "p")])
    await backend.claim("first", 1, 1, time.time() - 100)  # its lease ran out long ago
    process, key, token = await _holder(url, "recover")
    assert key == "k"
    await _kill(process)
    assert await backend.expire_dead_leases(time.time()) == 1
    [taken] = await backend.recover("sweeper", 10, 30, time.time())
    assert taken.token not in (None, token)


@pytest.mark.slow
@needs_posix
async def test_a_live_process_s_lease_is_never_ended(url: str, backend: SQLiteBackend) -> None:
    await backend.enqueue([NewJob("mine", "f", "p"), NewJob("child's", "f", "p")])
    [mine] = await backend.claim("parent", 1, 3600, time.time())
    process, key, _ = await _holder(url)
    assert (mine.key, key) == ("mine", "child's")
    try:
        for _ in range(3):
            assert await backend.expire_dead_leases(time.time()) == 0
        assert await backend.recover("sweeper", 10, 30, time.time()) == []
        renewal = await backend.renew("parent", [Lease("mine", mine.token or "")], 60, time.time())
        assert renewal.lost == []
    finally:
        assert process.stdin is not None
        process.stdin.close()  # it exits cleanly, leaving its job active
        assert await asyncio.wait_for(process.wait(), LONG_WAIT) == 0
    # Gone now: its lease ends, the parent's (alive) does not.
    assert await backend.expire_dead_leases(time.time()) == 1
    assert [r.key for r in await backend.recover("sweeper", 10, 30, time.time())] == ["child's"]


@pytest.mark.slow
@needs_posix
async def test_another_host_s_lease_is_never_ended(url: str, backend: SQLiteBackend) -> None:
    await backend.enqueue([NewJob("k", "f", "p")])
    process, _, _ = await _holder(url)
    await _kill(process)
    here = this_process().host
    for elsewhere in (f"other-{here}", here.replace("pidns=", "pidns=other-")):
        # A host name, boot or PID namespace of its own: its pid says nothing here.
        _sql(backend, "UPDATE owners SET host = ? WHERE pid = ?", elsewhere, process.pid)
        assert await backend.expire_dead_leases(time.time()) == 0
    _sql(backend, "UPDATE owners SET host = ? WHERE pid = ?", here, process.pid)
    assert await backend.expire_dead_leases(time.time()) == 1


@pytest.mark.slow
@needs_posix
async def test_a_job_claimed_without_owner_keeps_its_lease(
    url: str, backend: SQLiteBackend
) -> None:
    # A job that still points at a dead owner but carries another worker id was claimed
    # since by code that records no owner (an older version): its lease is left alone.
    await backend.enqueue([NewJob("k", "f", "p")])
    process, _, _ = await _holder(url)
    await _kill(process)
    _sql(backend, "UPDATE jobs SET worker_id = 'claimed-by-older-code' WHERE key = 'k'")
    assert await backend.expire_dead_leases(time.time()) == 0


@needs_proc
async def test_a_reused_pid_is_not_the_owner(backend: SQLiteBackend) -> None:
    # The owner row's pid exists (it is this very process) but started at another time:
    # the pid was reused, the owner is gone.
    await backend.enqueue([NewJob("k", "f", "p")])
    await backend.claim("w", 1, 3600, time.time())
    assert await backend.expire_dead_leases(time.time()) == 0
    _sql(backend, "UPDATE owners SET started = started + 1")
    assert await backend.expire_dead_leases(time.time()) == 1


@needs_posix
async def test_a_lease_that_ran_out_is_not_counted(backend: SQLiteBackend) -> None:
    await backend.enqueue([NewJob("k", "f", "p")])
    await backend.claim("w", 1, 30, time.time())
    _sql(backend, "UPDATE owners SET pid = ?, started = NULL", _free_pid())
    assert await backend.expire_dead_leases(time.time() + 60) == 0  # ran out by then
    assert await backend.expire_dead_leases(time.time()) == 1


def _free_pid() -> int:
    """The pid of a process that ended and was reaped (free until the system reuses it)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


@needs_proc
def test_the_host_is_this_boot_and_pid_namespace() -> None:
    # Two containers sharing the file and a host name see different pids: never the same.
    host = this_process().host
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert boot_id in host and os.readlink("/proc/self/ns/pid") in host


@needs_proc
async def test_is_gone_knows_zombies_reused_pids_and_live_processes() -> None:
    me = this_process()
    assert not is_gone(me.pid, me.started)
    assert not is_gone(me.pid, None)  # no start time to compare: it exists, so may be it
    assert is_gone(me.pid, (me.started or 0) + 1)  # another process now has this pid
    assert not is_gone(0, None) and not is_gone(-1, None)  # process groups, not processes
    # Not an asyncio subprocess: asyncio's child watcher would reap it at once.
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    child = await asyncio.to_thread(subprocess.Popen, sleeper)
    try:
        started = _start_time(child.pid)
        assert not is_gone(child.pid, started)
        child.kill()
        # Killed but not reaped: a zombie, its pid still taken.
        await wait_until(lambda: _state(child.pid) == "Z", timeout=LONG_WAIT, message="zombie")
        assert is_gone(child.pid, started)
    finally:
        child.kill()
        child.wait()
    assert is_gone(child.pid, started)


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2 :].split()


def _state(pid: int) -> str:
    return _stat_fields(pid)[0]


def _start_time(pid: int) -> int:
    return int(_stat_fields(pid)[19])


# Recording the owner costs nothing per claim once recorded


async def _statements(backend: SQLiteBackend, call: Callable[[], Awaitable[Any]]) -> list[str]:
    seen: list[str] = []

    def trace(conn: sqlite3.Connection, callback: Callable[[str], None] | None) -> None:
        conn.set_trace_callback(callback)

    await backend._run(lambda conn: trace(conn, seen.append))
    try:
        await call()
    finally:
        await backend._run(lambda conn: trace(conn, None))
    return seen


async def test_the_owner_is_recorded_once_per_worker_id(backend: SQLiteBackend) -> None:
    await backend.enqueue([NewJob(f"k{i}", "f", "p") for i in range(4)])

    def claim(worker: str) -> Callable[[], Awaitable[Any]]:
        return lambda: backend.claim(worker, 1, 30, time.time())

    def inserts(statements: list[str]) -> int:
        return sum("INSERT INTO owners" in s for s in statements)

    assert inserts(await _statements(backend, claim("w1"))) == 1
    second = await _statements(backend, claim("w1"))
    assert inserts(second) == 0 and not any("owners" in s for s in second)
    assert inserts(await _statements(backend, claim("w2"))) == 1
    assert inserts(await _statements(backend, claim("w2"))) == 0
    await backend.claim("w3", 1, 30, time.time())  # nothing left to claim: nothing recorded
    rows = _sql(backend, "SELECT worker_id, pid FROM owners ORDER BY owner_id")
    assert rows == [("w1", os.getpid()), ("w2", os.getpid())]
    held = _sql(
        backend, "SELECT o.worker_id FROM jobs AS j JOIN owners AS o ON o.owner_id = j.owner"
    )
    assert sorted(held) == [("w1",), ("w1",), ("w2",), ("w2",)]


async def test_a_rolled_back_claim_leaves_no_owner_to_point_at(
    backend: SQLiteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The owner row is remembered only once its transaction committed: a claim that fails
    # after inserting it must insert it again next time, not point at a row that never was.
    await backend.enqueue([NewJob("k", "f", "p")])
    queries = backend._jobs.q
    monkeypatch.setitem(queries, "activate_job", "SELECT no_such_function()")
    with pytest.raises(BackendError, match="no_such_function"):
        await backend.claim("w", 1, 30, time.time())
    monkeypatch.undo()
    assert _sql(backend, "SELECT count(*) FROM owners") == [(0,)]
    assert len(await backend.claim("w", 1, 30, time.time())) == 1
    [(owner,)] = _sql(backend, "SELECT owner FROM jobs WHERE key = 'k'")
    assert _sql(backend, "SELECT worker_id FROM owners WHERE owner_id = ?", owner) == [("w",)]
