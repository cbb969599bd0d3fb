"""``conveyor SETTINGS --workers N``: N worker processes, replaced when they die."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.job import Status
from conveyor.queue import Queue
from conveyor.testing import wait_until
from conveyor.testing.backends import isolated_url, unreachable_reason
from conveyor.worker.supervisor import Supervisor, describe_exit

pytestmark = pytest.mark.slow

SETTINGS = """
    import os

    from conveyor.queue import Queue

    async def whoami(ctx, *, n):
        return {{"n": n, "pid": os.getpid()}}

    queue = Queue.from_url({url!r}, name="supervised")
    settings = {{
        "queue": queue,
        "functions": [whoami],
        "timers": {{"schedule": 0.2, "stats": 1, "sweep": 0.5, "abort": 0.2}},
        "shutdown_grace_period_s": 2,
    }}

    def crashing():
        # Fine in the supervisor (which checks the settings), fatal in every worker.
        if os.environ.get("CONVEYOR_SUPERVISOR_PID"):
            os._exit(3)
        return settings
"""

STARTED = re.compile(r"started worker process (\d+)/\d+ \(pid (\d+)\)")


def backend_url(tmp_path: Path) -> str:
    """SQLite when it is there, else Redis; the test is skipped when neither is."""
    try:
        import conveyor.backends.sqlite  # noqa: F401

        return isolated_url("sqlite", tmp_path)
    except ImportError:
        pass
    reason = unreachable_reason("redis")
    if reason is not None:
        pytest.skip(f"no SQLite backend yet and {reason}")
    return isolated_url("redis", tmp_path)


class Supervised:
    """A ``conveyor --workers`` process and what it printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.output.append(line.decode())

    def text(self) -> str:
        return "".join(self.output)

    def children(self) -> dict[int, int]:
        """Slot number to the pid of its latest process, from the supervisor's log."""
        latest: dict[int, int] = {}
        for match in STARTED.finditer(self.text()):
            latest[int(match.group(1))] = int(match.group(2))
        return latest

    def all_children(self) -> list[int]:
        return [int(m.group(2)) for m in STARTED.finditer(self.text())]


@pytest.fixture
async def project(tmp_path: Path) -> AsyncIterator[tuple[Path, str, Queue]]:
    """A settings module in a fresh directory, and a connected queue it shares."""
    url = backend_url(tmp_path)
    module = f"supervised_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(SETTINGS.format(url=url)))
    queue = Queue.from_url(url, name="supervised")
    await queue.connect()
    yield tmp_path, module, queue
    drop = getattr(queue.backend, "drop", None)
    if drop is not None and not url.startswith("sqlite"):
        with contextlib.suppress(Exception):
            await drop()
    await queue.disconnect()


@pytest.fixture
async def supervise() -> AsyncIterator[object]:
    """Start ``python -m conveyor ...``; the supervisor and its children are killed at the end."""
    started: list[Supervised] = []

    async def start(*args: str, cwd: Path) -> Supervised:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "conveyor",
            *args,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        supervised = Supervised(process)
        started.append(supervised)
        return supervised

    yield start
    for supervised in started:
        for pid in [supervised.process.pid, *supervised.all_children()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await supervised.process.wait()
        await supervised.reader


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def process_jobs(queue: Queue, count: int) -> set[int]:
    """Run ``count`` jobs through the workers; the pids that ran them."""
    results = await queue.map("whoami", [{"n": n} for n in range(count)], timeout=30)
    assert [r["n"] for r in results] == list(range(count))
    return {r["pid"] for r in results}


async def test_workers_are_replaced_when_killed_and_stopped_on_sigterm(
    project: tuple[Path, str, Queue], supervise: object
) -> None:
    cwd, module, queue = project
    supervisor: Supervised = await supervise(  # type: ignore[operator]
        f"{module}.settings", "--workers", "2", "-v", cwd=cwd
    )
    await wait_until(lambda: len(supervisor.children()) == 2, 30, 0.05, "two children")
    first = supervisor.children()
    assert all(alive(pid) for pid in first.values())
    await wait_until(lambda: _workers(queue, 2), 30, 0.1, "two workers publish records")
    ran_on = await process_jobs(queue, 10)
    assert ran_on <= set(first.values())

    victim = first[1]
    os.kill(victim, signal.SIGKILL)
    await wait_until(
        lambda: supervisor.children()[1] != victim, 30, 0.05, "the killed worker replaced"
    )
    replacement = supervisor.children()[1]
    assert "died unexpectedly (killed by SIGKILL)" in supervisor.text()
    assert supervisor.children()[2] == first[2]  # the other one was left alone
    await wait_until(
        lambda: _worker_with_pid(queue, replacement), 30, 0.1, "the replacement works the queue"
    )
    await wait_until(lambda: not alive(victim), 10, 0.05, "the killed worker reaped")
    assert await process_jobs(queue, 10) <= {replacement, first[2]}

    supervisor.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(supervisor.process.wait(), 60)
    await supervisor.reader
    assert code == 0, supervisor.text()
    for pid in supervisor.all_children():
        assert not alive(pid), f"worker {pid} outlived its supervisor:\n{supervisor.text()}"
    assert supervisor.text().count("SIGTERM received: stopping gracefully") == 2, supervisor.text()


async def _worker_with_pid(queue: Queue, pid: int) -> bool:
    workers = (await queue.info())["workers"]
    return any(f":{pid}:" in worker_id for worker_id in workers)


async def _workers(queue: Queue, count: int) -> bool:
    return len((await queue.info())["workers"]) >= count


async def test_a_crash_loop_makes_the_supervisor_give_up(
    project: tuple[Path, str, Queue], supervise: object
) -> None:
    cwd, module, _ = project
    supervisor: Supervised = await supervise(  # type: ignore[operator]
        f"{module}.crashing", "--workers", "2", cwd=cwd
    )
    code = await asyncio.wait_for(supervisor.process.wait(), 60)
    await supervisor.reader
    assert code == 1, supervisor.text()
    assert "giving up: worker processes died 5 times within 10s" in supervisor.text()
    assert "exit code 3" in supervisor.text()


async def test_burst_workers_finish_and_the_supervisor_exits(
    project: tuple[Path, str, Queue], supervise: object
) -> None:
    cwd, module, queue = project
    jobs = [await queue.enqueue("whoami", n=n) for n in range(6)]
    supervisor: Supervised = await supervise(  # type: ignore[operator]
        f"{module}.settings", "--workers", "2", "--burst", cwd=cwd
    )
    code = await asyncio.wait_for(supervisor.process.wait(), 60)
    await supervisor.reader
    assert code == 0, supervisor.text()
    for job in jobs:
        assert job is not None
        await job.refresh()
        assert job.status == Status.COMPLETE


async def test_orphaned_workers_stop_by_themselves(
    project: tuple[Path, str, Queue], supervise: object
) -> None:
    cwd, module, queue = project
    supervisor: Supervised = await supervise(  # type: ignore[operator]
        f"{module}.settings", "--workers", "2", "-v", cwd=cwd
    )
    await wait_until(lambda: len(supervisor.children()) == 2, 30, 0.05, "two children")
    children = list(supervisor.children().values())
    await wait_until(lambda: _workers(queue, 2), 30, 0.1, "two workers publish records")
    os.kill(supervisor.process.pid, signal.SIGKILL)
    for pid in children:
        await wait_until(lambda pid=pid: not alive(pid), 30, 0.1, f"orphan {pid} stopped")


def test_exit_statuses_read_well() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"


async def test_supervisor_stop_terminates_children_and_kills_stragglers(tmp_path: Path) -> None:
    # A child that ignores SIGTERM is killed once the stop timeout passes.
    ignore_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + (
        "print('ready', flush=True); time.sleep(120)"
    )
    supervisor = Supervisor([sys.executable, "-c", ignore_term], 2, stop_timeout=0.5)
    running = asyncio.create_task(supervisor.run())
    await wait_until(lambda: len(supervisor.pids) == 2, 30, 0.05, "two children")
    pids = supervisor.pids
    supervisor.stop()
    assert await asyncio.wait_for(running, 30) == 0
    assert supervisor.pids == []
    for pid in pids:
        assert not alive(pid)
