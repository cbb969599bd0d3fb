"""The console's JSON API: every route, bad input, access control and CSRF."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import console_tasks
import httpx
import pytest
from web_support import BEARER, READ_TOKEN

from conveyor import CronJob, Queue, Worker
from conveyor.admin import Admin, RunSummary
from conveyor.job import Status
from conveyor.testing import wait_until
from conveyor.web import Principal, create_app
from conveyor.worker.scheduler import CronScheduler

Clients = Callable[..., httpx.AsyncClient]


async def finished(admin: Admin, key: str, status: str | None = None) -> RunSummary:
    """The first finished run of job ``key`` (with ``status``, if given)."""

    async def done() -> RunSummary | None:
        for run in (await admin.runs(key=key)).runs:
            if run.status != "running" and status in (None, run.status):
                return run
        return None

    found: RunSummary = await wait_until(done, timeout=15, message=f"a run of {key} finished")
    return found


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of an API answer, checking its shape."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "fields"}
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


# Reading


async def test_overview_counts_runs_and_shows_workers(
    admin: Admin, worker: Worker, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    await finished(admin, await admin.enqueue("greet", {"name": "ada"}), "complete")
    await finished(admin, await admin.enqueue("fail", {}), "failed")
    body = (await client.get("/api/overview")).json()
    assert body["completed"] == 1
    assert body["failed"] == 1
    assert [w["id"] for w in body["workers"]] == [worker.id]
    assert body["queued"] == body["running"] == 0


async def test_health_is_503_without_a_worker_and_200_with_one(
    admin: Admin, settings: dict[str, Any], client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    response = await client.get("/api/health")
    assert response.status_code == 503
    assert response.json()["healthy"] is False
    running = Worker(**settings)
    import asyncio

    task = asyncio.create_task(running.start())
    try:

        async def healthy() -> bool:
            return (await client.get("/api/health")).status_code == 200

        await wait_until(healthy, timeout=10, message="health turned 200")
        body = (await client.get("/api/health")).json()
        assert body["queues"] == {"default": 1} and body["workers"] == 1
        assert body["status"] == "ok" and body["report_age_s"]["default"] >= 0
        assert body["hung"] == {"default": 0}  # sync threads that outlived their stop
    finally:
        await running.stop()
        await task


async def test_runs_filters_detail_and_logs(
    admin: Admin, worker: Worker, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    greet_key = await admin.enqueue("greet", {"name": "bob", "times": 3})
    fail_key = await admin.enqueue("fail", {"message": "disk full"})
    greet_run = await finished(admin, greet_key, "complete")
    fail_run = await finished(admin, fail_key, "failed")

    runs = (await client.get("/api/runs")).json()
    assert runs["total"] == 2
    failed = (await client.get("/api/runs", params={"status": "failed"})).json()
    assert [r["run_id"] for r in failed["runs"]] == [fail_run.run_id]
    by_error = (await client.get("/api/runs", params={"q": "DISK"})).json()
    assert [r["key"] for r in by_error["runs"]] == [fail_key]
    by_function = (await client.get("/api/runs", params={"function": "greet"})).json()
    assert [r["key"] for r in by_function["runs"]] == [greet_key]
    page = (await client.get("/api/runs", params={"limit": 1, "offset": 1})).json()
    assert len(page["runs"]) == 1 and page["total"] == 2

    detail = (await client.get(f"/api/runs/{greet_run.run_id}")).json()
    assert detail["kwargs"] == {"name": "bob", "times": 3}
    assert detail["result"] == "hello bob"
    failure = (await client.get(f"/api/runs/{fail_run.run_id}")).json()
    assert "RuntimeError: disk full" in failure["traceback"]

    logs = (await client.get(f"/api/runs/{greet_run.run_id}/logs")).json()
    assert [line["message"] for line in logs["lines"]] == [
        "hello bob (1 of 3)",
        "hello bob (2 of 3)",
        "hello bob (3 of 3)",
    ]
    after = (
        await client.get(
            f"/api/runs/{greet_run.run_id}/logs", params={"cursor": logs["lines"][0]["seq"]}
        )
    ).json()
    assert len(after["lines"]) == 2
    searched = (await client.get(f"/api/runs/{greet_run.run_id}/logs", params={"q": "2 of"})).json()
    assert [line["message"] for line in searched["lines"]] == ["hello bob (2 of 3)"]
    errors_only = (
        await client.get(f"/api/runs/{fail_run.run_id}/logs", params={"level": "error"})
    ).json()
    assert [line["level"] for line in errors_only["lines"]] == ["ERROR"]


async def test_a_run_that_does_not_exist_is_404(admin: Admin, client_factory: Clients) -> None:
    client = client_factory(create_app(admin))
    for path in ("/api/runs/424242", "/api/runs/424242/logs"):
        response = await client.get(path)
        assert response.status_code == 404
        assert error_of(response)["type"] == "run_not_found"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/runs", {"limit": "lots"}),
        ("/api/runs", {"limit": "0"}),
        ("/api/runs", {"offset": "-1"}),
        ("/api/runs", {"status": "exploded"}),
        ("/api/jobs", {"state": "everything"}),
        ("/api/throughput", {"range": "1y"}),
        ("/api/runs/1/logs", {"level": "LOUD"}),
    ],
)
async def test_bad_query_parameters_are_400(
    admin: Admin, client_factory: Clients, path: str, params: dict[str, str]
) -> None:
    client = client_factory(create_app(admin))
    await admin.enqueue("greet", {"name": "x"})
    response = await client.get(path, params=params)
    assert response.status_code in (400, 404)
    if path != "/api/runs/1/logs":
        assert response.status_code == 400
    assert error_of(response)["message"]


async def test_unknown_routes_and_methods_answer_json(
    admin: Admin, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    missing = await client.get("/api/nothing-here")
    assert missing.status_code == 404 and error_of(missing)["type"] == "not_found"
    wrong_method = await client.get("/api/enqueue")
    assert (
        wrong_method.status_code == 405 and error_of(wrong_method)["type"] == "method_not_allowed"
    )


async def test_available_jobs_describe_signatures_and_cron(
    admin: Admin, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    body = (await client.get("/api/available-jobs")).json()
    jobs = {job["name"]: job for job in body["available_jobs"]}
    assert body["total_jobs"] == len(jobs)
    greet = jobs["greet"]
    assert greet["doc"].startswith("Say hello to someone.")
    params = {p["name"]: p for p in greet["parameters"]}
    assert params["name"]["required"] and params["name"]["annotation"] == "str"
    assert params["times"]["default"] == 1 and not params["times"]["required"]
    assert jobs["nightly"]["category"] == "cron" and jobs["nightly"]["cron"] == "30 3 * * *"
    cron = (await client.get("/api/cron")).json()["cron_jobs"]
    nightly = next(row for row in cron if row["name"] == "nightly")
    assert nightly["next_run"] > time.time() and nightly["last_run"] is None


async def test_throughput_and_jobs_lists(
    admin: Admin, worker: Worker, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    await finished(admin, await admin.enqueue("fail", {}), "failed")
    later = await admin.enqueue("greet", {"name": "z"}, scheduled_at=time.time() + 3600)
    series = (await client.get("/api/throughput", params={"range": "1h"})).json()
    assert sum(b["counts"].get("failed", 0) for b in series["buckets"]) == 1
    queued = (await client.get("/api/jobs", params={"state": "queued"})).json()
    assert queued["jobs"] == []
    scheduled = (await client.get("/api/jobs", params={"state": "scheduled"})).json()
    assert [(j["key"], j["due_later"]) for j in scheduled["jobs"]] == [(later, True)]
    await admin.abort(later)
    failed = (await client.get("/api/jobs", params={"state": "failed"})).json()
    assert [j["function"] for j in failed["jobs"]] == ["fail"]
    assert failed["counts"] == {
        "queued": 0,
        "scheduled": 0,
        "running": 0,
        "failed": 1,
        "aborted": 1,
    }
    assert failed["total"] == 1 and failed["truncated"] is False
    aborted = (await client.get("/api/jobs", params={"state": "aborted"})).json()
    assert [j["key"] for j in aborted["jobs"]] == [later]


# Acting


async def test_enqueue_runs_the_job_now_or_later(
    admin: Admin, worker: Worker, client_factory: Clients, credentials: list[Any]
) -> None:
    client = client_factory(create_app(admin, auth=credentials), headers=BEARER)
    response = await client.post(
        "/api/enqueue", json={"name": "greet", "args": {"name": "eve"}}, headers=BEARER
    )
    assert response.status_code == 201
    key = response.json()["key"]
    run = await finished(admin, key, "complete")
    detail = (await client.get(f"/api/runs/{run.run_id}")).json()
    assert detail["trigger"] == "console"
    # SAQ's console field names, and a time with a zone.
    later = await client.post(
        "/api/enqueue",
        json={
            "job_name": "greet",
            "job_args": {"name": "tom"},
            "scheduled_at": "2999-01-01T00:00:00+00:00",
        },
        headers=BEARER,
    )
    assert later.status_code == 201 and later.json()["status"] == "scheduled"


async def test_enqueue_rejects_unknown_jobs_and_bad_arguments(
    admin: Admin, client_factory: Clients, credentials: list[Any]
) -> None:
    client = client_factory(create_app(admin, auth=credentials), headers=BEARER)
    unknown = await client.post("/api/enqueue", json={"name": "nope"}, headers=BEARER)
    assert unknown.status_code == 422
    assert error_of(unknown)["type"] == "unknown_job" and "name" in error_of(unknown)["fields"]
    bad = await client.post(
        "/api/enqueue",
        json={"name": "greet", "args": {"times": "three", "colour": "red"}},
        headers=BEARER,
    )
    assert bad.status_code == 422
    fields = error_of(bad)["fields"]
    assert set(fields) == {"times", "colour", "name"}
    assert "expected int" in fields["times"]
    assert "missing" in fields["name"]
    no_name = await client.post("/api/enqueue", json={"args": {}}, headers=BEARER)
    assert no_name.status_code == 422 and error_of(no_name)["fields"] == {"name": "required"}
    bad_time = await client.post(
        "/api/enqueue", json={"name": "greet", "scheduled_at": "tomorrow"}, headers=BEARER
    )
    assert bad_time.status_code == 400 and "scheduled_at" in error_of(bad_time)["fields"]
    assert (await admin.runs()).total == 0
    assert (await client.get("/api/jobs")).json()["total"] == 0


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_malformed_bodies_are_400(
    admin: Admin, client_factory: Clients, credentials: list[Any], body: bytes
) -> None:
    client = client_factory(create_app(admin, auth=credentials), headers=BEARER)
    response = await client.post(
        "/api/enqueue", content=body, headers={**BEARER, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["type"] in ("malformed_json", "bad_request")


async def test_abort_a_queued_job(
    admin: Admin, client_factory: Clients, credentials: list[Any]
) -> None:
    client = client_factory(create_app(admin, auth=credentials), headers=BEARER)
    key = await admin.enqueue("greet", {"name": "x"}, scheduled_at=time.time() + 3600)
    response = await client.post(
        f"/api/jobs/{key}/abort", json={"reason": "not needed"}, headers=BEARER
    )
    assert response.status_code == 200 and response.json() == {"key": key, "status": "aborted"}
    job = await admin.queues[0].job(key)
    assert job is not None and job.status.value == "aborted" and job.error == "not needed"
    again = await client.post(f"/api/jobs/{key}/abort", headers=BEARER)
    assert again.status_code == 409 and error_of(again)["type"] == "job_state"
    missing = await client.post("/api/jobs/no-such-key/abort", headers=BEARER)
    assert missing.status_code == 404 and error_of(missing)["type"] == "job_not_found"
    bad_reason = await client.post(f"/api/jobs/{key}/abort", json={"reason": 5}, headers=BEARER)
    assert bad_reason.status_code == 400


async def test_retry_a_failed_job(
    admin: Admin, worker: Worker, client_factory: Clients, credentials: list[Any]
) -> None:
    client = client_factory(create_app(admin, auth=credentials), headers=BEARER)
    key = await admin.enqueue("fail", {"message": "once"})
    first = await finished(admin, key, "failed")
    response = await client.post(f"/api/jobs/{key}/retry", headers=BEARER)
    assert response.status_code == 200 and response.json() == {"key": key, "status": "queued"}

    async def second_run() -> bool:
        runs = (await admin.runs(key=key)).runs
        return len([r for r in runs if r.status == "failed"]) == 2

    await wait_until(second_run, timeout=15, message="the retried job failed again")
    ok_key = await admin.enqueue("greet", {"name": "ok"})
    await finished(admin, ok_key, "complete")
    conflict = await client.post(f"/api/jobs/{ok_key}/retry", headers=BEARER)
    assert conflict.status_code == 409
    missing = await client.post("/api/jobs/no-such-key/retry", headers=BEARER)
    assert missing.status_code == 404
    assert first.run_id in [r["run_id"] for r in (await client.get("/api/runs")).json()["runs"]]


async def test_bulk_actions_report_each_key(
    admin: Admin, worker: Worker, client_factory: Clients, credentials: list[Any]
) -> None:
    client = client_factory(create_app(admin, auth=credentials), headers=BEARER)
    keys = [await admin.enqueue("fail", {"message": str(i)}) for i in range(2)]
    for key in keys:
        await finished(admin, key, "failed")
    response = await client.post(
        "/api/jobs/bulk", json={"action": "retry", "keys": [*keys, "missing"]}, headers=BEARER
    )
    assert response.status_code == 200
    results = {r["key"]: r for r in response.json()["results"]}
    assert all(results[key]["ok"] for key in keys)
    assert results["missing"]["ok"] is False
    assert results["missing"]["error"]["type"] == "job_not_found"
    assert response.json()["ok"] is False
    for body in (
        {"action": "explode", "keys": keys},
        {"action": "abort", "keys": []},
        {"action": "abort", "keys": "k"},
    ):
        bad = await client.post("/api/jobs/bulk", json=body, headers=BEARER)
        assert bad.status_code == 400


# Access control


async def test_nobody_gets_in_without_credentials(
    admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    client = client_factory(create_app(admin, auth=credentials))
    response = await client.get("/api/overview")
    assert response.status_code == 401 and error_of(response)["type"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    wrong = await client.get("/api/overview", auth=("ops", "guess"))
    assert wrong.status_code == 401
    forged = await client.get("/api/overview", headers={"Authorization": "Bearer nope-nope-nope"})
    assert forged.status_code == 401
    garbage = await client.get("/api/overview", headers={"Authorization": "Basic %%%"})
    assert garbage.status_code == 401
    page = await client.get("/runs")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fruns"
    assert (await client.get("/api/overview", auth=("ops", "ops-password"))).status_code == 200
    assert (await client.get("/api/overview", headers=BEARER)).status_code == 200


async def test_without_auth_only_local_clients_of_a_local_console_get_in(
    admin: Admin, client_factory: Clients
) -> None:
    local = create_app(admin)
    assert (await client_factory(local).get("/api/overview")).status_code == 200
    me = (await client_factory(local).get("/api/me")).json()
    assert (me["name"], me["role"], me["via"]) == ("local", "admin", "local")
    remote = await client_factory(local, host="203.0.113.9").get("/api/overview")
    assert remote.status_code == 401
    rebound = client_factory(local, base_url="http://attacker.example")
    assert (await rebound.get("/api/overview")).status_code == 401
    assert (
        await client_factory(local, base_url="http://127.0.0.1:8080").get("/")
    ).status_code == 200
    public = create_app(admin, public=True)
    assert (await client_factory(public).get("/api/overview")).status_code == 401
    assert (await client_factory(public).get("/")).status_code == 401


async def test_credentials_from_the_environment(
    admin: Admin, client_factory: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_PASSWORD", "saq-style")
    client = client_factory(create_app(admin, public=True))
    assert (await client.get("/api/me", auth=("admin", "saq-style"))).json()["role"] == "admin"
    monkeypatch.setenv("CONVEYOR_AUTH_USER", "root")
    monkeypatch.setenv("CONVEYOR_AUTH_PASSWORD", "conveyor-style")
    monkeypatch.setenv("CONVEYOR_AUTH_READ_TOKEN", READ_TOKEN)
    client = client_factory(create_app(admin, public=True))
    assert (await client.get("/api/me", auth=("root", "conveyor-style"))).status_code == 200
    assert (await client.get("/api/me", auth=("admin", "saq-style"))).status_code == 401
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert me.json()["role"] == "read"


async def test_read_only_users_cannot_act(
    admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    client = client_factory(create_app(admin, auth=credentials), headers=BEARER)
    viewer = ("viewer", "viewer-password")
    assert (await client.get("/api/runs", auth=viewer)).status_code == 200
    token = (await client.get("/api/me", auth=viewer)).json()["csrf_token"]
    key = await admin.enqueue("greet", {"name": "x"}, scheduled_at=time.time() + 3600)
    attempts = [
        ("/api/enqueue", {"name": "greet", "args": {"name": "y"}}),
        (f"/api/jobs/{key}/abort", {}),
        (f"/api/jobs/{key}/retry", {}),
        ("/api/jobs/bulk", {"action": "abort", "keys": [key]}),
    ]
    for path, body in attempts:
        response = await client.post(path, json=body, auth=viewer, headers={"X-CSRF-Token": token})
        assert response.status_code == 403, path
        assert error_of(response)["type"] == "forbidden"
        by_token = await client.post(
            path, json=body, headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        assert by_token.status_code == 403
    job = await admin.queues[0].job(key)
    assert job is not None and job.status.value == "queued"


async def test_state_changes_need_a_csrf_token_unless_by_bearer_token(
    admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    client = client_factory(create_app(admin, auth=credentials), headers=BEARER)
    ops = ("ops", "ops-password")
    body = {"name": "greet", "args": {"name": "csrf"}}
    missing = await client.post("/api/enqueue", json=body, auth=ops)
    assert missing.status_code == 403 and error_of(missing)["type"] == "csrf"
    wrong = await client.post(
        "/api/enqueue", json=body, auth=ops, headers={"X-CSRF-Token": "x~1~y"}
    )
    assert wrong.status_code == 403
    # The viewer's token is not the admin's.
    viewer_token = (await client.get("/api/me", auth=("viewer", "viewer-password"))).json()
    stolen = await client.post(
        "/api/enqueue", json=body, auth=ops, headers={"X-CSRF-Token": viewer_token["csrf_token"]}
    )
    assert stolen.status_code == 403
    token = (await client.get("/api/me", auth=ops)).json()["csrf_token"]
    ok = await client.post("/api/enqueue", json=body, auth=ops, headers={"X-CSRF-Token": token})
    assert ok.status_code == 201
    # Without the cookie the token was issued with, it is refused.
    fresh = client_factory(create_app(admin, auth=credentials))
    replayed = await fresh.post(
        "/api/enqueue", json=body, auth=ops, headers={"X-CSRF-Token": token}
    )
    assert replayed.status_code == 403
    assert (await client.post("/api/enqueue", json=body, headers=BEARER)).status_code == 201


async def test_a_host_callable_decides_who_gets_in(
    admin: Admin, client_factory: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    allowed = {"alice": "admin", "bob": "read"}

    def host_auth(request: Any) -> Principal | None:
        user = request.headers.get("X-Session-User")
        role = allowed.get(user)
        return Principal(user, role) if role else None

    client = client_factory(create_app(admin, auth=host_auth))
    assert (await client.get("/api/overview")).status_code == 401
    assert (
        await client.get("/api/overview", headers={"X-Session-User": "mallory"})
    ).status_code == 401
    bob = {"X-Session-User": "bob"}
    assert (await client.get("/api/overview", headers=bob)).status_code == 200
    alice = {"X-Session-User": "alice"}
    token = (await client.get("/api/me", headers=alice)).json()["csrf_token"]
    with caplog.at_level(logging.INFO, logger="conveyor.web"):
        response = await client.post(
            "/api/enqueue",
            json={"name": "greet", "args": {"name": "from-host"}},
            headers={**alice, "X-CSRF-Token": token},
        )
    assert response.status_code == 201
    key = response.json()["key"]
    job = await admin.queues[0].job(key)
    assert job is not None and job.meta["actor"] == "alice"
    audit = [r for r in caplog.records if r.name == "conveyor.web"]
    assert any("enqueue by alice" in r.getMessage() and key in r.getMessage() for r in audit)


async def test_an_unexpected_error_is_a_logged_500_without_traceback(
    admin: Admin,
    client_factory: Clients,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database caught fire")

    monkeypatch.setattr(admin, "overview", broken)
    client = client_factory(create_app(admin))
    with caplog.at_level(logging.ERROR, logger="conveyor.web"):
        api = await client.get("/api/overview")
        page = await client.get("/")
    assert api.status_code == 500 and error_of(api)["type"] == "internal"
    assert "fire" not in api.text
    assert page.status_code == 500 and "fire" not in page.text and "Traceback" not in page.text
    logged = [r for r in caplog.records if r.name == "conveyor.web" and r.exc_info]
    assert len(logged) == 2


async def test_openapi_describes_every_route(admin: Admin, client_factory: Clients) -> None:
    app = create_app(admin)
    document = (await client_factory(app).get("/api/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    described = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (route.path, method)
        for route in app.routes
        if getattr(route, "path", "").startswith("/api/")
        for method in (getattr(route, "methods", None) or ())
        if method != "HEAD"
    }
    assert served == described

    def resolve(reference: str) -> Any:
        node: Any = document
        for part in reference.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                assert resolve(node["$ref"]) is not None, node["$ref"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    for operations in document["paths"].values():
        for operation in operations.values():
            assert operation["summary"] and operation["responses"]


async def test_cron_shows_the_latest_run_of_each_schedule(
    settings: dict[str, Any], client_factory: Clients
) -> None:
    every_second = CronJob(console_tasks.greet, cron="* * * * * *", kwargs={"name": "cron"})
    admin = Admin.from_settings({**settings, "cron_jobs": [every_second]})
    client = client_factory(create_app(admin))
    try:
        [before] = [
            r for r in (await client.get("/api/cron")).json()["cron_jobs"] if r["name"] == "greet"
        ]
        assert before["last_run"] is None and before["queue"] == "default"
        assert len(before["next_runs"]) == 5 and before["next_run"] == before["next_runs"][0]
        queue = admin.queues[0]
        await CronScheduler(queue, [every_second], None, tick=1).tick()
        started = await queue.dequeue(timeout=5)
        assert started is not None
        await queue.finish(started, Status.COMPLETE, result="hello cron")
        [after] = [
            r for r in (await client.get("/api/cron")).json()["cron_jobs"] if r["name"] == "greet"
        ]
        run_id = str(started.meta["run_id"])
        assert after["last_run"]["run_id"] == run_id and after["last_run"]["status"] == "complete"
        page = (await client.get("/cron")).text
        assert f'/runs/{run_id}"' in page and "st-complete" in page
    finally:
        await admin.disconnect()


async def test_a_console_over_several_settings(
    settings: dict[str, Any], tmp_path: Path, client_factory: Clients
) -> None:
    billing = {
        "queue": Queue.from_url(f"sqlite:///{tmp_path / 'billing.db'}", name="billing"),
        "functions": [console_tasks.fail],
        "cron_jobs": [CronJob(console_tasks.nightly, cron="0 5 * * *")],
        "cron_tz": "Asia/Tokyo",
    }
    admin = Admin.from_settings_list([settings, billing])
    client = client_factory(create_app(admin))
    try:
        here = await admin.enqueue("greet", {"name": "a"})
        there = await admin.enqueue("fail", {}, queue="billing")
        later = await admin.enqueue("fail", {}, queue="billing", scheduled_at=time.time() + 600)
        both = (await client.get("/api/jobs")).json()
        assert {(j["key"], j["queue"]) for j in both["jobs"]} == {
            (here, "default"),
            (there, "billing"),
        }
        assert (both["counts"]["queued"], both["counts"]["scheduled"]) == (2, 1)
        one = (await client.get("/api/jobs", params={"queue": "billing"})).json()
        assert {j["key"]: j["due_later"] for j in one["jobs"]} == {there: False}
        params = {"queue": "billing", "state": "scheduled"}
        one = (await client.get("/api/jobs", params=params)).json()
        assert {j["key"]: j["due_later"] for j in one["jobs"]} == {later: True}
        missing = await client.get("/api/jobs", params={"queue": "nowhere"})
        assert missing.status_code == 404 and error_of(missing)["type"] == "queue_not_found"
        health = await client.get("/api/health")
        assert health.status_code == 503
        assert health.json()["queues"] == {"default": 0, "billing": 0}
        cron = (await client.get("/api/cron")).json()["cron_jobs"]
        zones = {(r["name"], r["queue"]): r["tz"] for r in cron}
        assert (
            zones[("nightly", "default")] == "UTC" and zones[("nightly", "billing")] == "Asia/Tokyo"
        )
        assert "<th>Queue</th>" in (await client.get("/cron")).text
    finally:
        await admin.disconnect()
