"""The admin commands, run in-process on a SQLite settings module written for each test."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conveyor import admin_cli
from conveyor.admin_cli import add_admin_commands, run_admin_command
from conveyor.job import Status
from conveyor.queue import Queue
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until

SETTINGS_MODULE = """
import asyncio
import logging

from conveyor.queue import Queue

log = logging.getLogger("app.reports")


async def report(ctx, *, day: str, pages: int = 1, pause: float = 0.0) -> str:
    \"\"\"Build the daily report.\"\"\"
    for page in range(pages):
        log.info("page %d of %s", page, day)
    await asyncio.sleep(pause)
    log.warning("report %s done", day)
    return day


async def explode(ctx, *, why: str) -> None:
    \"\"\"Always fails.\"\"\"
    raise RuntimeError(why)


settings = {{
    "queue": Queue.from_url("sqlite:///{db}", name="reports"),
    "functions": [report, explode],
}}
"""


class Cli:
    """Runs admin commands on one settings module and captures what they print."""

    def __init__(self, path: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.path = path
        self.capsys = capsys
        parser = argparse.ArgumentParser(prog="conveyor")
        add_admin_commands(parser.add_subparsers(dest="command"))
        self.parser = parser

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        command, *rest = argv
        self.capsys.readouterr()
        args = self.parser.parse_args([command, self.path, *rest])
        code = await run_admin_command(args)
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    async def json(self, *argv: str) -> Any:
        code, out, err = await self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def settings_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"cli_settings_{uuid.uuid4().hex[:8]}"
    source = SETTINGS_MODULE.format(db=tmp_path / "jobs.db")
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


@pytest.fixture
async def cli(settings_module: Any, capsys: pytest.CaptureFixture[str]) -> Any:
    queue = settings_module.settings["queue"]
    await queue.connect()  # the test's own reads; the commands then leave it connected
    yield Cli(f"{settings_module.__name__}.settings", capsys)
    await queue.disconnect()


def worker_for(settings_module: Any) -> Any:
    settings = settings_module.settings
    timers = {"schedule": 0.2, "stats": 1, "sweep": 0.2, "abort": 0.1, "logs": 0.05}
    return running_worker(settings["queue"], settings["functions"], timers=timers)


async def finished(queue: Queue, key: str) -> Any:
    job = await queue.job(key)
    return job if job is not None and job.status in (Status.COMPLETE, Status.FAILED) else None


async def test_enqueue_checks_input_and_exits_2(cli: Cli, settings_module: Any) -> None:
    queue = settings_module.settings["queue"]
    code, out, err = await cli("enqueue", "report", "--args", '{"day": "2025-01-31"}')
    assert code == 0 and err == ""
    stored = await queue.job(out.strip())
    assert stored is not None and stored.kwargs == {"day": "2025-01-31"}
    assert stored.meta["trigger"] == "cli" and stored.meta["actor"].startswith("cli")

    at = time.time() + 3600
    created = await cli.json("enqueue", "report", "--args", '{"day": "x"}', "--at", str(at))
    later = await queue.job(created["key"])
    assert later is not None and abs(float(later.scheduled) - at) < 1

    for argv, needle in [
        (("enqueue", "report", "--args", "{day: 1}"), "--args is not valid JSON"),
        (("enqueue", "report", "--args", "[1]"), "must be a JSON object"),
        (("enqueue", "nope"), "known functions: explode, purge_run_history, report"),
        (("enqueue", "report", "--args", '{"pages": "two"}'), "day: missing required"),
        (("abort", "no-such-key"), "no job with key 'no-such-key'"),
        (("retry", "no-such-key"), "no job with key 'no-such-key'"),
        (("logs", "999999"), "no run with id '999999'"),
        (("runs", "--status", "weird"), "unknown run status"),
    ]:
        code, out, err = await cli(*argv)
        assert code == 2, argv
        assert out == "" and needle in err and err.count("\n") == 1, (argv, err)
    assert (await queue.count("incomplete")) == 2


async def test_bad_settings_path_exits_2(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.parser
    code = await run_admin_command(parser.parse_args(["info", "no_such_module_xyz.settings"]))
    err = capsys.readouterr().err
    assert code == 2 and "no_such_module_xyz" in err


async def test_info_runs_and_logs(cli: Cli, settings_module: Any) -> None:
    queue = settings_module.settings["queue"]
    async with worker_for(settings_module) as worker:
        good = await queue.enqueue("report", day="mon", pages=2)
        bad = await queue.enqueue("explode", why="no paper in tray 3")
        assert good is not None and bad is not None
        await wait_until(lambda: finished(queue, good.key))
        await wait_until(lambda: finished(queue, bad.key))
        await queue.enqueue("report", day="later", scheduled=time.time() + 3600)
        await wait_until(lambda: _worker_listed(cli, worker.id), message="worker in info")
        code, out, _ = await cli("info")
    assert code == 0
    assert "queue reports: 0 queued, 0 running, 1 scheduled" in out
    assert "last 24 h: 1 completed, 1 failed" in out and worker.id in out

    code, out, _ = await cli("runs")
    assert code == 0 and "1-2 of 2 runs" in out
    assert "explode" in out and "no paper in tray 3" in out and "complete" in out
    failed = await cli.json("runs", "--status", "failed")
    assert failed["total"] == 1 and failed["runs"][0]["function"] == "explode"
    report_run = (await cli.json("runs", "--function", "report"))["runs"][0]["run_id"]

    code, out, _ = await cli("logs", report_run)
    assert code == 0
    assert [line.split(None, 3)[-1] for line in out.splitlines()] == [
        "page 0 of mon",
        "page 1 of mon",
        "report mon done",
    ]
    code, out, _ = await cli("logs", report_run, "--level", "warning", "--json")
    assert [json.loads(line)["message"] for line in out.splitlines()] == ["report mon done"]


async def _worker_listed(cli: Cli, worker_id: str) -> bool:
    overview = await cli.json("info")
    return any(w["id"] == worker_id for w in overview["workers"])


async def test_logs_follow_prints_until_the_run_ends(
    cli: Cli, settings_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_cli, "FOLLOW_INTERVAL_S", 0.05)
    queue = settings_module.settings["queue"]
    async with worker_for(settings_module):
        job = await queue.enqueue("report", day="tue", pages=3, pause=0.5)
        assert job is not None
        running = await wait_until(lambda: _run_of(queue, job.key), message="the run starts")
        code, out, _ = await asyncio.wait_for(cli("logs", running, "--follow"), 10)
    assert code == 0
    assert [line.split(None, 3)[-1] for line in out.splitlines()] == [
        "page 0 of tue",
        "page 1 of tue",
        "page 2 of tue",
        "report tue done",
    ]


async def _run_of(queue: Queue, key: str) -> str | None:
    job = await queue.job(key)
    return str(job.meta["run_id"]) if job is not None and job.meta.get("run_id") else None


async def test_abort_and_retry(cli: Cli, settings_module: Any) -> None:
    queue = settings_module.settings["queue"]
    waiting = await queue.enqueue("report", day="wed", scheduled=time.time() + 3600)
    assert waiting is not None
    code, out, _ = await cli("abort", waiting.key, "--reason", "holiday")
    assert code == 0 and out.strip() == f"job {waiting.key}: aborted"
    stored = await queue.job(waiting.key)
    assert stored is not None and stored.status == Status.ABORTED and stored.error == "holiday"
    code, _, err = await cli("abort", waiting.key)
    assert code == 2 and "already finished" in err

    async with worker_for(settings_module):
        bad = await queue.enqueue("explode", why="jam")
        assert bad is not None
        await wait_until(lambda: finished(queue, bad.key))
        assert await cli.json("retry", bad.key) == {"key": bad.key, "status": "queued"}
        await wait_until(lambda: _runs_of(queue, bad.key, 2), message="the second run")
    runs = await cli.json("runs", "--key", bad.key)
    assert [r["status"] for r in runs["runs"]] == ["failed", "failed"]
    code, out, _ = await cli("retry", waiting.key)
    assert code == 0 and "queued again" in out


async def _runs_of(queue: Queue, key: str, count: int) -> bool:
    from conveyor.backends.base import RunFilter

    runs, _ = await queue.backend.list_runs(RunFilter(key=key), 0, 10)
    return len(runs) == count and all(r.status != "running" for r in runs)


def test_conveyor_command_routes_admin_subcommands(
    settings_module: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.cli import main

    path = f"{settings_module.__name__}.settings"
    assert main(["enqueue", path, "nope"]) == 2
    assert "no function named 'nope'" in capsys.readouterr().err
    assert main(["runs", path, "--json"]) == 0
    assert '"total": 0' in capsys.readouterr().out.replace('"total":0', '"total": 0')


async def test_admin_errors_are_conveyor_errors_and_exit_2(cli: Cli) -> None:
    from conveyor import errors
    from conveyor.admin import errors as admin_errors

    for name in ("AdminError", "RunNotFoundError", "UnknownQueueError", "JobStateError"):
        assert getattr(admin_errors, name) is getattr(errors, name)
        assert issubclass(getattr(errors, name), errors.ConveyorError)
    assert issubclass(errors.RunNotFoundError, errors.AdminError)
    code, _, err = await cli("runs", "--status", "exploded")
    assert code == 2 and "unknown run status 'exploded'" in err
    code, _, err = await cli("logs", "no-such-run")
    assert code == 2 and "no run with id 'no-such-run'" in err
