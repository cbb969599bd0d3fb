"""examples/litestar_postgres: the reference set-up's demo endpoints, tasks of two modules'
registries, a daily cron in America/New_York, the console at /queue."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from integration_support import finished, poll_job, serve

pytest.importorskip("litestar")

from examples.litestar_postgres.app import create_app

AUTH_VARIABLES = ("CONVEYOR_AUTH_PASSWORD", "AUTH_PASSWORD", "CONVEYOR_AUTH_TOKEN")


@pytest.fixture(autouse=True)
def no_console_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("path", "payload", "result"),
    [
        (
            "/queue/example",
            {"message": "Hello from the queue!"},
            {"status": "success", "processed_message": "Processed: Hello from the queue!"},
        ),
        (
            "/queue/email",
            {"to": "user@example.com", "subject": "Test Email", "email_body": "Hi"},
            {"status": "sent", "to": "user@example.com", "subject": "Test Email"},
        ),
        ("/signup", {"user_id": 7}, {"status": "sent", "user_id": 7}),
    ],
)
async def test_demo_endpoints_enqueue_and_the_worker_runs_them(
    postgres_url: str, path: str, payload: dict[str, Any], result: dict[str, Any]
) -> None:
    async with serve(create_app(postgres_url, run_worker=True)) as client:
        accepted = await client.post(path, json=payload)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["status"] == "queued"
        body = await poll_job(client, accepted.json()["status_url"], finished)
        assert (body["status"], body["result"]) == ("complete", result)
        assert body["key"] == accepted.json()["job_key"]
        assert [run["attempt"] for run in body["runs"]] == [1]


async def test_a_delayed_task_waits_for_its_time(postgres_url: str) -> None:
    async with serve(create_app(postgres_url, run_worker=True)) as client:
        before = time.time()
        accepted = await client.post(
            "/queue/delayed", json={"message": "Delayed task", "delay_seconds": 3600}
        )
        assert accepted.status_code == 202
        body = (await client.get(accepted.json()["status_url"])).json()
        assert body["status"] == "queued" and body["runs"] == []
        assert before + 3600 <= body["scheduled"] <= time.time() + 3600
        jobs = (await client.get("/queue/api/jobs", params={"state": "scheduled"})).json()
        assert [job["key"] for job in jobs["jobs"]] == [body["key"]]


async def test_the_daily_cleanup_runs_at_three_in_new_york(postgres_url: str) -> None:
    async with serve(create_app(postgres_url, run_worker=False)) as client:
        answer = await client.get("/queue/api/cron")
        assert answer.status_code == 200, answer.text
        entries = {entry["name"]: entry for entry in answer.json()["cron_jobs"]}
        cleanup = entries["cleanup_inactive_users"]
        assert (cleanup["cron"], cleanup["tz"]) == ("0 3 * * *", "America/New_York")
        assert len(cleanup["next_runs"]) >= 2
        for fire_time in cleanup["next_runs"]:
            local = datetime.fromtimestamp(fire_time, ZoneInfo("America/New_York"))
            assert (local.hour, local.minute) == (3, 0)


async def test_the_status_router_and_the_console_share_the_app(postgres_url: str) -> None:
    async with serve(create_app(postgres_url, run_worker=True)) as client:
        bad = await client.post("/tasks/send_email", json={"to": "a@example.com"})
        assert bad.status_code == 422
        assert bad.json()["errors"] == {
            "subject": "missing required parameter",
            "email_body": "missing required parameter",
        }
        assert (await client.post("/tasks/no_such_task", json={})).status_code == 404
        assert (await client.get("/tasks/jobs/no-such-key")).status_code == 404
        accepted = await client.post("/tasks/delayed_task", json={"message": "now"})
        assert accepted.status_code == 202
        body = await poll_job(client, accepted.json()["status_url"], finished)
        assert body["result"] == {"status": "success", "message": "now"}
        page = await client.get("/queue/")
        assert page.status_code == 200 and 'href="/queue/runs"' in page.text
        runs = (await client.get("/queue/api/runs")).json()["runs"]
        assert [run["key"] for run in runs] == [body["key"]]
