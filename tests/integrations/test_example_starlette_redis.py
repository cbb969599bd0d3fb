"""examples/starlette_redis: enqueue from a handler, apply with a timeout, the console at /jobs."""

from __future__ import annotations

import pytest
from examples.starlette_redis.app import create_app
from integration_support import finished, poll_job, serve

AUTH_VARIABLES = ("CONVEYOR_AUTH_PASSWORD", "AUTH_PASSWORD", "CONVEYOR_AUTH_TOKEN")


@pytest.fixture(autouse=True)
def no_console_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


async def test_a_thumbnail_is_enqueued_and_its_status_read_back(redis_url: str) -> None:
    async with serve(create_app(redis_url, run_worker=True)) as client:
        accepted = await client.post("/thumbnails", json={"image": "cat.png", "width": 64})
        assert accepted.status_code == 202, accepted.text
        body = await poll_job(client, accepted.json()["status_url"], finished)
        assert body["status"] == "complete"
        assert body["result"] == {"image": "cat.png", "thumbnail": "cat-64px.png"}
        assert [run["status"] for run in body["runs"]] == ["complete"]
        runs = (await client.get("/jobs/api/runs")).json()["runs"]
        assert [run["key"] for run in runs] == [body["key"]]


async def test_apply_answers_with_the_result(redis_url: str) -> None:
    async with serve(create_app(redis_url, run_worker=True)) as client:
        answer = await client.post("/sum", json={"a": 2, "b": 3})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"result": 5}


async def test_apply_gives_up_after_its_timeout(redis_url: str) -> None:
    # No worker runs: the job cannot finish, so the handler's timeout is what answers.
    async with serve(create_app(redis_url, run_worker=False, apply_timeout=0.2)) as client:
        answer = await client.post("/sum", json={"a": 2, "b": 3})
        assert answer.status_code == 504
        assert "no result within 0.2s" in answer.json()["detail"]
        jobs = (await client.get("/jobs/api/jobs")).json()["jobs"]
        assert [(job["function"], job["status"]) for job in jobs] == [("add", "queued")]


async def test_the_console_asks_for_the_password_when_one_is_set(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(create_app(redis_url, run_worker=False)) as client:
        assert (await client.get("/jobs/")).status_code == 200  # this machine, no password
    monkeypatch.setenv("CONVEYOR_AUTH_PASSWORD", "s3cret-password")
    async with serve(create_app(redis_url, run_worker=False)) as client:
        assert (await client.get("/jobs/api/me")).status_code == 401
        me = await client.get("/jobs/api/me", auth=("admin", "s3cret-password"))
        assert me.status_code == 200 and me.json()["name"] == "admin"
