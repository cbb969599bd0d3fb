"""examples/fastapi_sqlite: reports with progress, status routes, and a console that lets in
whom the app lets in."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from integration_support import finished, poll_job, serve

pytest.importorskip("fastapi")

from examples.fastapi_sqlite.app import create_app, worker_settings

from conveyor import Worker

ADA = {"X-User": "ada"}  # an admin of the app
GRACE = {"X-User": "grace"}  # a viewer of the app
MALLORY = {"X-User": "mallory"}  # not a user of the app


async def test_a_report_runs_and_its_status_is_read_back(sqlite_url: str) -> None:
    async with serve(create_app(sqlite_url, run_worker=True)) as client:
        assert (await client.post("/reports", json={})).status_code == 401
        started = await client.post(
            "/reports", json={"pages": 3, "seconds_per_page": 0}, headers=ADA
        )
        assert started.status_code == 202, started.text
        body = await poll_job(client, started.json()["status_url"], finished, headers=ADA)
        assert body["status"] == "complete"
        assert body["task"] == "build_report"
        assert body["result"] == {"pages": 3, "url": f"/reports/{body['key']}.pdf"}
        assert body["progress"] == 1.0
        assert [run["status"] for run in body["runs"]] == ["complete"]


async def test_progress_is_visible_while_the_report_runs(sqlite_url: str) -> None:
    async with serve(create_app(sqlite_url, run_worker=True)) as client:
        started = await client.post(
            "/reports", json={"pages": 2, "seconds_per_page": 3600}, headers=ADA
        )
        url = started.json()["status_url"]
        halfway = await poll_job(
            client, url, lambda b: b["status"] == "active" and b["progress"] == 0.5, headers=ADA
        )
        assert halfway["runs"][0]["status"] == "running"
        # An admin of the app stops it from the console.
        me = (await client.get("/admin/queue/api/me", headers=ADA)).json()
        aborted = await client.post(
            f"/admin/queue/api/jobs/{halfway['key']}/abort",
            headers={**ADA, "X-CSRF-Token": me["csrf_token"]},
        )
        assert aborted.status_code == 200, aborted.text
        body = await poll_job(client, url, finished, headers=ADA)
        assert body["status"] == "aborted"


async def test_status_routes_check_arguments_and_names(sqlite_url: str) -> None:
    async with serve(create_app(sqlite_url, run_worker=False)) as client:
        refused = await client.post("/tasks/greet", json={"name": "Ada"})
        assert refused.status_code == 401
        bad = await client.post("/tasks/build_report", json={"pages": "two"}, headers=ADA)
        assert bad.status_code == 422
        assert set(bad.json()["errors"]) == {"pages"}
        missing = await client.post("/tasks/greet", json={}, headers=ADA)
        assert missing.status_code == 422
        assert missing.json()["errors"] == {"name": "missing required parameter"}
        unknown = await client.post("/tasks/launch_rockets", json={}, headers=ADA)
        assert unknown.status_code == 404
        assert "build_report, greet" in unknown.json()["detail"]
        nobody = await client.get("/tasks/jobs/no-such-key", headers=ADA)
        assert nobody.status_code == 404
        accepted = await client.post("/tasks/greet", json={"name": "Ada"}, headers=ADA)
        assert accepted.status_code == 202
        assert accepted.headers["location"] == accepted.json()["status_url"]
        queued = (await client.get(accepted.json()["status_url"], headers=ADA)).json()
        assert queued["status"] == "queued" and queued["runs"] == []


@pytest.mark.parametrize(
    ("credentials", "status"),
    [({}, 401), ({"headers": MALLORY}, 401), ({"cookies": {"user": "mallory"}}, 401)],
)
async def test_the_console_refuses_whom_the_app_refuses(
    sqlite_url: str, credentials: dict[str, Any], status: int
) -> None:
    async with serve(create_app(sqlite_url, run_worker=False), **credentials) as client:
        assert (await client.post("/reports", json={})).status_code == status
        assert (await client.get("/admin/queue/api/me")).status_code == status
        page = await client.get("/admin/queue/")
        assert page.status_code == status and "Reports: jobs" in page.text


async def test_the_console_serves_the_app_users_with_their_roles(sqlite_url: str) -> None:
    async with serve(create_app(sqlite_url, run_worker=False)) as client:
        ada = (await client.get("/admin/queue/api/me", headers=ADA)).json()
        assert (ada["name"], ada["role"]) == ("ada", "admin")
        client.cookies.set("user", "grace")
        page = await client.get("/admin/queue/")
        assert page.status_code == 200 and 'href="/admin/queue/runs"' in page.text
        client.cookies.delete("user")
        grace = (await client.get("/admin/queue/api/me", headers=GRACE)).json()
        assert grace["role"] == "read"
        # A viewer of the app may look, not act.
        refused = await client.post(
            "/admin/queue/api/enqueue",
            json={"name": "greet", "args": {"name": "Grace"}},
            headers={**GRACE, "X-CSRF-Token": grace["csrf_token"]},
        )
        assert refused.status_code == 403
        made = await client.post(
            "/admin/queue/api/enqueue",
            json={"name": "greet", "args": {"name": "Ada"}},
            headers={**ADA, "X-CSRF-Token": ada["csrf_token"]},
        )
        assert made.status_code == 201, made.text
        jobs = (await client.get("/admin/queue/api/jobs", headers=GRACE)).json()
        assert [job["function"] for job in jobs["jobs"]] == ["greet"]


async def test_the_worker_settings_run_the_tasks_in_a_worker_of_their_own(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_URL", sqlite_url)
    settings = worker_settings()
    worker = Worker(**settings, timers={"abort": 0.1})
    async with serve(create_app(sqlite_url, run_worker=False)) as client:
        running = asyncio.create_task(worker.start())
        try:
            accepted = await client.post("/tasks/greet", json={"name": "Grace"}, headers=GRACE)
            body = await poll_job(client, accepted.json()["status_url"], finished, headers=GRACE)
            assert (body["status"], body["result"]) == ("complete", "Hello, Grace!")
            assert body["runs"][0]["worker_id"] == worker.id
        finally:
            await worker.stop()
            await running
