"""Live updates over server-sent events, through a real uvicorn server in this loop."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Worker
from conveyor.admin import Admin
from conveyor.errors import ConfigurationError
from conveyor.testing import wait_until
from conveyor.web import cli as web_cli
from conveyor.web import serve, start_console

STREAM_TIMEOUT = httpx.Timeout(20.0)


def free_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def server(admin: Admin) -> AsyncIterator[str]:
    """The console served on a free port; yields its base URL."""
    port = free_port()
    started = asyncio.Event()
    task = asyncio.create_task(serve(admin, "127.0.0.1", port, started=started, poll_interval=0.2))
    await asyncio.wait_for(started.wait(), 10)
    yield f"http://127.0.0.1:{port}"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


async def events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The server-sent events of a streaming response."""
    event: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "event" in event:
                yield event
            event = {}
        elif line.startswith("event: "):
            event["event"] = line[7:]
        elif line.startswith("id: "):
            event["id"] = line[4:]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])


async def running_run(admin: Admin, key: str) -> str:
    """The id of the running run of job ``key``."""

    async def found() -> str | None:
        runs = (await admin.runs(key=key, status="running")).runs
        return runs[0].run_id if runs else None

    run_id: str = await wait_until(found, timeout=15, message="the job started")
    return run_id


async def test_the_log_tail_follows_a_running_job_until_it_ends(
    admin: Admin, worker: Worker, server: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    key = await admin.enqueue("wait_for_file", {"path": str(release), "lines": 2})
    run_id = await running_run(admin, key)
    seen: list[str] = []
    async with (
        httpx.AsyncClient(timeout=STREAM_TIMEOUT) as client,
        client.stream("GET", f"{server}/events/runs/{run_id}/logs") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in events(response):
            if event["event"] == "lines":
                assert int(event["id"]) == event["data"]["cursor"]
                seen.append(event["data"]["html"])
                if "waiting line 2" in "".join(seen) and not release.exists():
                    release.touch()  # the job is still running: let it finish
            elif event["event"] == "end":
                assert event["data"]["status"] == "complete"
                break
    text = "".join(seen)
    assert text.index("waiting line 1") < text.index("waiting line 2") < text.index("released by")


async def test_a_reconnected_tail_resumes_after_the_last_event_id(
    admin: Admin, worker: Worker, server: str
) -> None:
    key = await admin.enqueue("greet", {"name": "resume", "times": 3})

    async def complete() -> list[Any]:
        return (await admin.runs(key=key, status="complete")).runs

    [run] = await wait_until(complete, timeout=15)
    first = (await admin.logs(run.run_id, limit=1)).lines[0]
    async with (
        httpx.AsyncClient(timeout=STREAM_TIMEOUT) as client,
        client.stream(
            "GET",
            f"{server}/events/runs/{run.run_id}/logs",
            headers={"Last-Event-ID": str(first.seq)},
        ) as response,
    ):
        received = [event async for event in events(response)]
    html = "".join(e["data"]["html"] for e in received if e["event"] == "lines")
    assert "1 of 3" not in html and "2 of 3" in html and "3 of 3" in html
    assert received[-1]["event"] == "end"


async def test_overview_and_run_list_streams_update_when_runs_finish(
    admin: Admin, worker: Worker, server: str
) -> None:
    async with httpx.AsyncClient(timeout=STREAM_TIMEOUT) as client:

        async def next_update(url: str, predicate: Any) -> dict[str, Any]:
            async with client.stream("GET", url) as response:
                async for event in events(response):
                    if event["event"] == "update" and predicate(event["data"]):
                        return dict(event["data"])
            raise AssertionError("the stream ended")

        overview = asyncio.create_task(
            next_update(f"{server}/events/overview", lambda d: d["counters"]["completed"] == 1)
        )
        key = await admin.enqueue("greet", {"name": "live-run"})

        def finished(data: dict[str, Any]) -> bool:
            html = data["regions"]["runs"]
            return key in html and "st-complete" in html

        runs = asyncio.create_task(next_update(f"{server}/events/runs?function=greet", finished))
        update = await asyncio.wait_for(overview, 20)
        assert update["counters"]["workers"] == 1 and worker.id in update["regions"]["workers"]
        listed = await asyncio.wait_for(runs, 20)
        assert listed["counters"]["runs"] == 1 and "greet" in listed["regions"]["runs"]


async def test_streams_need_access(admin: Admin, server: str) -> None:
    async with httpx.AsyncClient(timeout=STREAM_TIMEOUT) as client:
        response = await client.get(f"{server}/events/runs/1/logs?level=LOUD")
        assert response.status_code == 400


async def test_serve_stops_promptly_with_streams_open(admin: Admin) -> None:
    port = free_port()
    started = asyncio.Event()
    task = asyncio.create_task(serve(admin, "127.0.0.1", port, started=started))
    await asyncio.wait_for(started.wait(), 10)
    with pytest.raises(OSError):
        await serve(admin, "127.0.0.1", port)
    async with httpx.AsyncClient(timeout=STREAM_TIMEOUT) as client:
        opened = asyncio.Event()

        async def listen() -> None:
            async with client.stream("GET", f"http://127.0.0.1:{port}/events/overview") as r:
                opened.set()
                async for _ in r.aiter_lines():
                    pass

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(opened.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await asyncio.wait_for(listener, 10)  # the server closed the stream


async def test_start_console_listens_before_it_returns(settings: dict[str, Any]) -> None:
    port = free_port()
    task = await start_console(settings, (), "127.0.0.1", port, poll_interval=0.2)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/api/overview")
        assert response.status_code == 200 and response.json()["queued"] == 0
        with pytest.raises(OSError):
            await start_console(settings, (), "127.0.0.1", port)
        with pytest.raises(ConfigurationError, match="no_such_module"):
            await start_console(settings, ["no_such_module.settings"], "127.0.0.1", free_port())
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settings["queue"].disconnect()


def test_conveyor_web_exits_2_for_bad_settings_or_a_busy_port(
    settings: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert web_cli.main(["no_such_module.settings"]) == 2
    assert "no_such_module" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert web_cli.main(["console_tasks.settings", "--port", str(port)]) == 2
    assert f"cannot serve the console on 127.0.0.1:{port}" in capsys.readouterr().err
