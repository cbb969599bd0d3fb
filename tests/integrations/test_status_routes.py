"""The status routes, alike in Starlette, FastAPI and Litestar, over several named queues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from integration_support import finished, poll_job, serve
from starlette.applications import Starlette

from conveyor import task
from conveyor.integrations import Conveyor, QueueConfig
from conveyor.testing.backends import isolated_url

KINDS = ["starlette", "fastapi", "litestar"]


async def add(ctx: dict[str, Any], *, a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b


async def explode(ctx: dict[str, Any], *, why: str) -> None:
    """Always fail."""
    raise ValueError(why)


@task(ttl=-1)  # the job's row is deleted as soon as it finishes; its runs stay
async def fleeting(ctx: dict[str, Any], *, value: str) -> dict[str, str]:
    """Finish and vanish."""
    return {"value": value}


async def internal(ctx: dict[str, Any]) -> None:
    """Not for HTTP clients."""


def build_conveyor(tmp_path: Path, run_workers: bool = True) -> Conveyor:
    url = isolated_url("sqlite", tmp_path)
    timers = {"abort": 0.1, "stats": 1}
    return Conveyor(
        [
            QueueConfig("default", url=url, tasks=[add, internal], timers=timers),
            QueueConfig("emails", url=url, tasks=[explode, fleeting], timers=timers),
        ],
        run_workers=run_workers,
    )


def status_app(kind: str, conveyor: Conveyor, tasks: list[str] | None = None) -> Any:
    """An application of ``kind`` with the status routes under ``/api/tasks``."""
    if kind == "starlette":
        from conveyor.integrations.starlette import status_routes

        routes = status_routes(conveyor, "/api/tasks", tasks=tasks)
        return Starlette(routes=routes, lifespan=conveyor.lifespan)
    if kind == "fastapi":
        fastapi = pytest.importorskip("fastapi")
        from conveyor.integrations.fastapi import status_router as fastapi_router

        app = fastapi.FastAPI(lifespan=conveyor.lifespan)
        app.include_router(fastapi_router(conveyor, prefix="/api/tasks", tasks=tasks))
        return app
    litestar = pytest.importorskip("litestar")
    from conveyor.integrations.litestar import ConveyorPlugin, status_router

    router = status_router(conveyor, path="/api/tasks", tasks=tasks)
    return litestar.Litestar(route_handlers=[router], plugins=[ConveyorPlugin(conveyor)])


@pytest.mark.parametrize("kind", KINDS)
async def test_a_task_is_triggered_on_its_queue_and_read_back(kind: str, tmp_path: Path) -> None:
    conveyor = build_conveyor(tmp_path)
    async with serve(status_app(kind, conveyor)) as client:
        accepted = await client.post("/api/tasks/add", json={"a": 2, "b": 3})
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        assert (body["queue"], body["task"], body["status"]) == ("default", "add", "queued")
        assert body["status_url"] == f"/api/tasks/jobs/{body['key']}"
        assert accepted.headers["location"] == body["status_url"]
        report = await poll_job(client, body["status_url"], finished)
        assert (report["status"], report["result"], report["error"]) == ("complete", 5, None)
        assert report["attempts"] == 1 and report["completed"] >= report["started"]
        [run] = report["runs"]
        assert (run["status"], run["attempt"], run["key"]) == ("complete", 1, body["key"])
        assert run["worker_id"] == conveyor.workers[0].id


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failure_reports_its_error(kind: str, tmp_path: Path) -> None:
    async with serve(status_app(kind, build_conveyor(tmp_path))) as client:
        accepted = await client.post("/api/tasks/explode", json={"why": "no SMTP server"})
        assert accepted.json()["queue"] == "emails"
        report = await poll_job(client, accepted.json()["status_url"], finished)
        assert report["status"] == "failed"
        assert "no SMTP server" in report["error"] and report["result"] is None
        assert [run["status"] for run in report["runs"]] == ["failed"]


@pytest.mark.parametrize("kind", KINDS)
async def test_an_expired_job_is_described_from_its_runs(kind: str, tmp_path: Path) -> None:
    conveyor = build_conveyor(tmp_path)
    async with serve(status_app(kind, conveyor)) as client:
        accepted = await client.post("/api/tasks/fleeting", json={"value": "gone"})
        key = accepted.json()["key"]
        report = await poll_job(client, accepted.json()["status_url"], finished)
        assert await conveyor.queue("emails").job(key) is None, "the row has expired"
        assert (report["status"], report["result"]) == ("complete", {"value": "gone"})
        assert (report["queue"], report["task"]) == ("emails", "fleeting")


@pytest.mark.parametrize("kind", KINDS)
async def test_bad_requests_are_named(kind: str, tmp_path: Path) -> None:
    conveyor = build_conveyor(tmp_path, run_workers=False)
    async with serve(status_app(kind, conveyor, tasks=["add", "explode"])) as client:
        wrong = await client.post("/api/tasks/add", json={"a": "two", "c": 1})
        assert wrong.status_code == 422
        assert wrong.json()["errors"] == {
            "a": "expected int, got str 'two'",
            "c": "unknown parameter; the parameters are: a, b",
        }
        assert "arguments do not fit 'add'" in wrong.json()["detail"]
        empty = await client.post("/api/tasks/explode")
        assert empty.status_code == 422
        assert empty.json()["errors"] == {"why": "missing required parameter"}
        for name in ("internal", "no_such_task"):
            unknown = await client.post(f"/api/tasks/{name}", json={})
            assert unknown.status_code == 404
            assert unknown.json()["detail"].endswith("the tasks are add, explode")
        missing = await client.get("/api/tasks/jobs/no-such-key")
        assert missing.status_code == 404
        assert (
            missing.json()["detail"] == "no job with key 'no-such-key' in queue 'default, emails'"
        )
        assert await conveyor.queue("default").count("incomplete") == 0


async def test_a_body_that_is_not_json_is_a_bad_request(tmp_path: Path) -> None:
    conveyor = build_conveyor(tmp_path, run_workers=False)
    async with serve(status_app("starlette", conveyor)) as client:
        answer = await client.post("/api/tasks/add", content=b"{a: 1")
        assert answer.status_code == 400
        assert "JSON object" in answer.json()["detail"]


def test_tasks_must_be_known(tmp_path: Path) -> None:
    from conveyor import ConfigurationError
    from conveyor.integrations.starlette import status_routes

    with pytest.raises(ConfigurationError, match=r"no queue runs \['ad'\]; the tasks are add"):
        status_routes(build_conveyor(tmp_path), tasks=["ad"])
