"""The command line: ``conveyor SETTINGS`` runs a worker, ``conveyor demo`` shows one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli import main
from conveyor.job import Job, Status
from conveyor.queue import Queue
from conveyor.testing import wait_until

pytestmark = pytest.mark.slow

Spawn = Callable[..., Awaitable[asyncio.subprocess.Process]]

SETTINGS = """
    import asyncio

    from conveyor.queue import Queue

    async def add(ctx, *, a, b):
        return a + b

    async def slow(ctx, *, seconds):
        await asyncio.sleep(seconds)
        return "finished"

    queue = Queue.from_url({url!r}, name="cli")
    settings = {{
        "queue": queue,
        "functions": [add, slow],
        "timers": {{"schedule": 0.2, "stats": 1, "sweep": 0.5, "abort": 0.2}},
        "shutdown_grace_period_s": 10,
    }}
"""


def sqlite_available() -> bool:
    try:
        import conveyor.backends.sqlite  # noqa: F401
    except ImportError:
        return False
    return True


needs_sqlite = pytest.mark.skipif(
    not sqlite_available(), reason="the SQLite backend (conveyor.backends.sqlite) is not here yet"
)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str, str]:
    """A directory with a settings module on a fresh SQLite file: (dir, module, url)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    module = f"cli_settings_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(SETTINGS.format(url=url)))
    return tmp_path, module, url


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start ``python -m conveyor ...``; every process is killed at the end of the test."""
    started: list[asyncio.subprocess.Process] = []

    async def start(*args: str, cwd: Path) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "conveyor",
            *args,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()


async def read_until(process: asyncio.subprocess.Process, needle: str, timeout: float = 30) -> str:
    """Read the process's output until a line contains ``needle``; all of it so far."""
    assert process.stdout is not None
    seen: list[str] = []

    async def scan() -> None:
        while True:
            line = await process.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise AssertionError(f"exited before printing {needle!r}:\n{''.join(seen)}")
            seen.append(line.decode())
            if needle in seen[-1]:
                return

    try:
        await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {needle!r} within {timeout}s:\n{''.join(seen)}") from None
    return "".join(seen)


async def finish(process: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str]:
    """Wait for the process to exit: its exit code and the rest of its output."""
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, output.decode()


# In-process: argument handling and errors


@pytest.mark.parametrize("flags", [["--port", "8080"], ["-e", "other.settings"]])
def test_web_options_need_web(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["anything.settings", *flags]) == 2
    assert "go with --web" in capsys.readouterr().err


def test_web_with_several_workers_is_refused(
    project: tuple[Path, str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory, module, _ = project
    monkeypatch.chdir(directory)
    monkeypatch.syspath_prepend(str(directory))
    assert main([f"{module}.settings", "--web", "--workers", "2"]) == 2
    assert "conveyor web SETTINGS" in capsys.readouterr().err


@needs_sqlite
async def test_worker_serves_the_console_with_web(
    project: tuple[Path, str, str], spawn: Spawn
) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("starlette")
    directory, module, url = project
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await spawn(f"{module}.settings", "--web", "--port", str(port), "-v", cwd=directory)
    queue = Queue.from_url(url, name="cli")
    try:
        job = await queue.enqueue("add", a=2, b=3)
        assert job is not None
        await job.refresh(until_complete=30)
        assert job.result == 5
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def healthy() -> bool:
                try:
                    response = await client.get("/api/health")
                except httpx.TransportError:
                    return False
                return response.status_code == 200

            await wait_until(healthy, timeout=30, message="console answers /api/health")
            runs = (await client.get("/api/runs")).json()
        assert any(run["function"] == "add" for run in runs["runs"]), runs
    finally:
        await queue.disconnect()
    process.send_signal(signal.SIGTERM)
    code, output = await finish(process)
    assert code == 0, output


def test_settings_that_do_not_import_exit_2_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["missing_module_abc.settings"]) == 2
    err = capsys.readouterr().err
    assert "conveyor: error: cannot load worker settings 'missing_module_abc.settings'" in err
    assert "module 'missing_module_abc' not found" in err


def test_settings_module_errors_show_their_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    module = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("def load():\n    raise KeyError('REDIS_URL')\nload()\n")
    try:
        assert main([f"{module}.settings"]) == 2
    finally:
        sys.modules.pop(module, None)
    err = capsys.readouterr().err
    assert "Traceback" in err and "raise KeyError('REDIS_URL')" in err
    assert "raised KeyError: 'REDIS_URL'" in err


def test_unknown_settings_keys_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    module = f"typo_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from conveyor.queue import Queue\n"
        "settings = {'queue': Queue.from_url('memory://'), 'functions': [], 'concurency': 2}\n"
    )
    try:
        assert main([f"{module}.settings"]) == 2
    finally:
        sys.modules.pop(module, None)
    assert "did you mean 'concurrency'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "two"])
def test_workers_must_be_a_positive_number(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["x.settings", "--workers", value])
    assert caught.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_help_shows_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "settings" in out and "conveyor demo" in out
    for option in ("--workers", "--verbose", "--check", "--burst", "--web", "--port"):
        assert option in out


# The health check


@needs_sqlite
async def test_check_fails_without_a_worker_and_passes_with_one(
    project: tuple[Path, str, str], spawn: Spawn
) -> None:
    cwd, module, url = project
    check = await spawn(f"{module}.settings", "--check", cwd=cwd)
    code, output = await finish(check)
    assert code == 1, output
    assert "no worker of queue 'cli'" in output

    worker = await spawn(f"{module}.settings", "-v", cwd=cwd)
    await read_until(worker, "started on queue")
    queue = Queue.from_url(url, name="cli")
    async with queue:
        await wait_until(lambda: _has_workers(queue), 20, 0.1, "a worker record")

    check = await spawn(f"{module}.settings", "--check", cwd=cwd)
    code, output = await finish(check)
    assert code == 0, output
    assert "healthy: 1 worker(s) of queue 'cli'" in output


async def _has_workers(queue: Queue) -> bool:
    return bool((await queue.info())["workers"])


# Running a worker


@needs_sqlite
async def test_worker_runs_jobs_and_stops_gracefully_on_sigterm(
    project: tuple[Path, str, str], spawn: Spawn
) -> None:
    cwd, module, url = project
    worker = await spawn(f"{module}.settings", "-v", cwd=cwd)
    await read_until(worker, "started on queue")
    queue = Queue.from_url(url, name="cli")
    async with queue:
        assert await queue.apply("add", a=2, b=3, timeout=20) == 5
        job = await _slow_job_running(queue, seconds=1.0)
        worker.send_signal(signal.SIGTERM)
        code, output = await finish(worker)
        assert code == 0, output
        assert "SIGTERM received: stopping gracefully" in output
        # Graceful: the running job was allowed to finish, not cut short and re-queued.
        await job.refresh()
        assert job.status == Status.COMPLETE
        assert job.result == "finished"


@needs_sqlite
async def test_a_second_sigterm_stops_at_once_and_requeues_running_jobs(
    project: tuple[Path, str, str], spawn: Spawn
) -> None:
    cwd, module, url = project
    worker = await spawn(f"{module}.settings", "-v", cwd=cwd)
    await read_until(worker, "started on queue")
    queue = Queue.from_url(url, name="cli")
    async with queue:
        job = await _slow_job_running(queue, seconds=60, timeout=120)
        worker.send_signal(signal.SIGTERM)
        await read_until(worker, "stopping gracefully")
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code, output = await finish(worker)
        # The grace period is 10 s: the second signal cut it short.
        assert time.monotonic() - started < 8, output
        assert code == 0, output
        assert "stopping now" in output
        await job.refresh()
        assert job.status == Status.QUEUED and job.error == "worker shut down"


async def _slow_job_running(queue: Queue, **options: Any) -> Job:
    """Enqueue the settings' ``slow`` task and wait until the worker runs it."""
    job = await queue.enqueue("slow", **options)
    assert job is not None
    await wait_until(lambda: _is_active(queue, job.key), 20, 0.02, "the slow job started")
    return job


async def _is_active(queue: Queue, key: str) -> bool:
    job = await queue.job(key)
    return job is not None and job.status == Status.ACTIVE


@needs_sqlite
async def test_sigint_stops_the_worker_too(project: tuple[Path, str, str], spawn: Spawn) -> None:
    cwd, module, _ = project
    worker = await spawn(f"{module}.settings", "-v", cwd=cwd)
    await read_until(worker, "started on queue")
    worker.send_signal(signal.SIGINT)
    code, output = await finish(worker)
    assert code == 0, output
    assert "SIGINT received" in output and "stopped" in output


@needs_sqlite
async def test_burst_runs_the_queued_jobs_then_exits(
    project: tuple[Path, str, str], spawn: Spawn
) -> None:
    cwd, module, url = project
    queue = Queue.from_url(url, name="cli")
    async with queue:
        jobs = [await queue.enqueue("add", a=i, b=i) for i in range(5)]
        worker = await spawn(f"{module}.settings", "--burst", cwd=cwd)
        code, output = await finish(worker)
        assert code == 0, output
        for i, job in enumerate(jobs):
            assert job is not None
            await job.refresh()
            assert (job.status, job.result) == (Status.COMPLETE, 2 * i)


@needs_sqlite
async def test_verbosity_levels(project: tuple[Path, str, str], spawn: Spawn) -> None:
    cwd, module, _ = project
    quiet = await spawn(f"{module}.settings", "--burst", cwd=cwd)
    code, output = await finish(quiet)
    assert code == 0 and "INFO" not in output and "DEBUG" not in output

    info = await spawn(f"{module}.settings", "--burst", "-v", cwd=cwd)
    code, output = await finish(info)
    assert code == 0 and "INFO conveyor.worker" in output and "DEBUG" not in output

    debug = await spawn(f"{module}.settings", "--burst", "-vv", cwd=cwd)
    code, output = await finish(debug)
    assert code == 0 and "DEBUG" in output


# The demo


@needs_sqlite
async def test_demo_runs_jobs_shows_them_and_ends_by_itself(tmp_path: Path, spawn: Spawn) -> None:
    demo = await spawn("demo", cwd=tmp_path)  # 20 jobs by default
    code, output = await finish(demo, timeout=60)
    assert code == 0, output
    for event in ("start", "complete", "retry", "failed", "log"):
        assert f" {event} " in output, f"no {event!r} event in:\n{output}"
    assert "queue_stats" in output  # the cron job ran
    assert "20 jobs enqueued by the producer" in output
    assert "total" in output and "(temporary)" in output
    assert os.listdir(tmp_path) == []  # nothing left behind


@needs_sqlite
async def test_demo_keeps_the_database_it_is_given(tmp_path: Path, spawn: Spawn) -> None:
    demo = await spawn("demo", "--jobs", "2", "--db", "kept.db", cwd=tmp_path)
    code, output = await finish(demo, timeout=60)
    assert code == 0, output
    assert (tmp_path / "kept.db").exists()


async def test_demo_forever_stops_on_ctrl_c(tmp_path: Path, spawn: Spawn) -> None:
    demo = await spawn("demo", "--forever", "--url", "memory://", cwd=tmp_path)
    await read_until(demo, "job 3")
    demo.send_signal(signal.SIGINT)
    code, output = await finish(demo)
    assert code == 0, output
    assert "total" in output


async def test_the_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "conveyor"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    process = await asyncio.create_subprocess_exec(
        str(script), "demo", "--help", stdout=asyncio.subprocess.PIPE, cwd=tmp_path
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert b"--forever" in output
