"""The console's pages and forms: sign-in, enqueue with errors next to fields, actions."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Worker
from conveyor.admin import Admin
from conveyor.testing import wait_until
from conveyor.web import create_app

Clients = Callable[..., httpx.AsyncClient]


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token a page carries."""
    found = re.search(r'<meta name="csrf-token" content="([^"]*)">', page.text)
    assert found, "the page has no CSRF token"
    return html.unescape(found.group(1))


async def post_greet(
    client: httpx.AsyncClient, token: str, mode: str = "form", **fields: str
) -> httpx.Response:
    """Post the enqueue form for ``greet``; ``fields`` by their form names (``arg.name``
    is ``arg_name`` here)."""
    data = {"csrf_token": token, "job": "greet", "mode": mode}
    data.update({name.replace("arg_", "arg.", 1): value for name, value in fields.items()})
    return await client.post("/enqueue", data=data)


async def signed_in(client: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    """Sign in through the form; returns the overview page."""
    response = await client.post(
        "/login", data={"username": user, "password": password, "next": "/"}
    )
    assert response.status_code == 303, response.text
    return await client.get(response.headers["location"])


async def test_every_page_renders(admin: Admin, worker: Worker, client_factory: Clients) -> None:
    client = client_factory(create_app(admin, title="Billing jobs"))
    key = await admin.enqueue("greet", {"name": "pages", "times": 2})

    async def run_id() -> str | None:
        runs = (await admin.runs(key=key, status="complete")).runs
        return runs[0].run_id if runs else None

    finished = await wait_until(run_id, timeout=15)
    for path in (
        "/",
        "/?range=1h",
        "/?range=7d",
        "/runs",
        "/runs?status=complete&function=greet",
        f"/runs/{finished}",
        f"/runs/{finished}?level=INFO&q=hello",
        "/jobs",
        "/jobs?state=running",
        "/jobs?state=failed",
        "/enqueue",
        "/enqueue?job=greet",
        "/enqueue?q=hel",
        "/cron",
    ):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert "<title>" in page.text and "Billing jobs" in page.text
    detail = (await client.get(f"/runs/{finished}")).text
    assert "hello pages (2 of 2)" in detail and "&#34;pages&#34;" in detail
    cron = (await client.get("/cron")).text
    assert "30 3 * * *" in cron and "nightly" in cron
    form = (await client.get("/enqueue?job=greet")).text
    assert 'name="arg.times" type="number" step="1" value="1"' in form
    assert 'name="arg.name" type="text" value="" required' in form
    assert "Say hello to someone." in form
    assert (await client.get("/runs/99999")).status_code == 404
    assert (await client.get("/enqueue?job=nope")).status_code == 404
    assert (await client.get("/runs?limit=x")).status_code == 400


async def test_sign_in_and_out(
    admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    client = client_factory(create_app(admin, auth=credentials))
    login = await client.get("/login?next=/jobs")
    assert login.status_code == 200 and 'name="next" value="/jobs"' in login.text
    wrong = await client.post("/login", data={"username": "ops", "password": "no", "next": "/"})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    outside = await client.post(
        "/login", data={"username": "ops", "password": "ops-password", "next": "https://evil.test/"}
    )
    assert outside.status_code == 303 and outside.headers["location"] == "/"
    overview = await client.get("/")
    assert overview.status_code == 200 and "ops" in overview.text
    logout = await client.post("/logout", data={"csrf_token": csrf_of(overview)})
    assert logout.status_code == 303
    assert (await client.get("/")).status_code == 303


async def test_enqueue_form_shows_errors_next_to_fields(
    admin: Admin, worker: Worker, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    token = csrf_of(await client.get("/enqueue?job=greet"))
    bad = await post_greet(
        client, token, arg_name="", arg_times="many", arg_loud="false", when="now"
    )
    assert bad.status_code == 422
    times_field = bad.text.split('name="arg.times"', 1)[1].split("</div>", 1)[0]
    assert "expected a whole number" in times_field
    assert 'value="many"' in times_field
    missing = await post_greet(client, token, arg_name="", arg_times="2", when="now")
    name_field = missing.text.split('name="arg.name"', 1)[1].split("</div>", 1)[0]
    assert missing.status_code == 422 and "missing required parameter" in name_field
    raw = await post_greet(client, token, mode="json", args='{"name": 5}')
    assert raw.status_code == 422 and "expected str" in raw.text
    broken = await post_greet(client, token, mode="json", args="{")
    assert broken.status_code == 400 and "not valid JSON" in broken.text
    assert (await admin.runs()).total == 0

    ok = await post_greet(
        client, token, arg_name="form", arg_times="2", arg_loud="true", when="now"
    )
    assert ok.status_code == 303 and ok.headers["location"].startswith("/runs?key=")
    landing = await client.get(ok.headers["location"])
    assert "Enqueued greet" in landing.text
    key = ok.headers["location"].split("key=", 1)[1]

    async def complete() -> bool:
        return bool((await admin.runs(key=key, status="complete")).runs)

    await wait_until(complete, timeout=15)
    job = await admin.queues[0].job(key)
    assert job is not None and job.kwargs == {"name": "form", "times": 2, "loud": True}
    assert job.meta["actor"] == "local"


async def test_enqueue_form_at_a_chosen_time(admin: Admin, client_factory: Clients) -> None:
    client = client_factory(create_app(admin))
    token = csrf_of(await client.get("/enqueue?job=greet"))
    response = await post_greet(
        client, token, arg_name="later", when="at", scheduled_at="2999-01-01T10:00", tz_offset="-60"
    )
    assert response.status_code == 303 and response.headers["location"] == "/jobs?state=scheduled"
    [job] = (await client.get("/api/jobs", params={"state": "scheduled"})).json()["jobs"]
    # 10:00 in a zone one hour ahead of UTC (JavaScript's offset is -60) is 09:00 UTC.
    expected = datetime(2999, 1, 1, 9, 0, tzinfo=UTC).timestamp()
    assert job["due_later"] and job["scheduled"] == pytest.approx(expected)
    past = await post_greet(
        client, token, arg_name="late", when="at", scheduled_at="2020-01-01T10:00", tz_offset="0"
    )
    assert past.status_code == 422
    field = past.text.split('name="scheduled_at"', 1)[1].split("</fieldset>", 1)[0]
    assert "2020-01-01 10:00:00 UTC is in the past" in field
    assert len((await client.get("/api/jobs", params={"state": "scheduled"})).json()["jobs"]) == 1


async def test_form_actions_abort_retry_and_bulk(
    admin: Admin, worker: Worker, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    later = [
        await admin.enqueue("greet", {"name": str(i)}, scheduled_at=time.time() + 3600)
        for i in range(3)
    ]
    page = await client.get("/jobs?state=scheduled")
    token = csrf_of(page)
    assert all(key in page.text for key in later)
    one = await client.post(f"/jobs/{later[0]}/abort", data={"csrf_token": token, "next": "/jobs"})
    assert one.status_code == 303 and one.headers["location"] == "/jobs"
    assert "is aborted" in (await client.get("/jobs")).text
    both = await client.post(
        "/jobs/bulk",
        data={"csrf_token": token, "action": "abort", "keys": later[1:], "next": "/jobs"},
    )
    assert both.status_code == 303
    assert "Aborted 2 of 2 job(s)." in (await client.get("/jobs")).text
    failing = await admin.enqueue("fail", {})

    async def failed() -> bool:
        return bool((await admin.runs(key=failing, status="failed")).runs)

    await wait_until(failed, timeout=15)
    retried = await client.post(f"/jobs/{failing}/retry", data={"csrf_token": token})
    assert retried.status_code == 303
    again = await client.post(f"/jobs/{later[0]}/retry", data={"csrf_token": token})
    assert again.status_code == 303
    assert "was queued again" in (await client.get(again.headers["location"])).text
    no_token = await client.post(f"/jobs/{later[1]}/retry", data={})
    assert no_token.status_code == 403
    assert (
        await client.post("/jobs/bulk", data={"csrf_token": token, "action": "abort"})
    ).status_code == 303


async def test_read_only_users_see_no_actions_and_cannot_post(
    admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    client = client_factory(create_app(admin, auth=credentials))
    key = await admin.enqueue("greet", {"name": "x"}, scheduled_at=time.time() + 3600)
    page = await signed_in(client, "viewer", "viewer-password")
    assert "read-only" in page.text
    jobs = await client.get("/jobs?state=scheduled")
    assert key in jobs.text and "Abort" not in jobs.text
    enqueue = await client.get("/enqueue?job=greet")
    assert (
        "read-only access" in enqueue.text and 'method="post" action="/enqueue"' not in enqueue.text
    )
    denied = await client.post(f"/jobs/{key}/abort", data={"csrf_token": csrf_of(jobs)})
    assert denied.status_code == 403 and "read-only" in denied.text


async def test_the_favicon_is_served_under_any_mount_path(
    admin: Admin, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    icon = await client.get("/favicon.ico", follow_redirects=True)
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    page = await client.get("/")
    assert '<link rel="icon" href="/static/favicon.svg' in page.text


async def test_retry_is_not_offered_on_a_failed_run_whose_job_completed_later(
    admin: Admin, worker: Worker, client_factory: Clients, tmp_path: Path
) -> None:
    client = client_factory(create_app(admin))
    flag = tmp_path / "flag"
    key = await admin.enqueue("fail_unless", {"path": str(flag)})

    async def runs_with(status: str) -> list[Any]:
        return list((await admin.runs(key=key, status=status)).runs)

    await wait_until(lambda: runs_with("failed"), timeout=15)
    [failed] = await runs_with("failed")
    page = await client.get(f"/runs/{failed.run_id}")
    assert f'action="/jobs/{key}/retry"' in page.text
    flag.touch()
    await admin.retry(key)
    await wait_until(lambda: runs_with("complete"), timeout=15)
    page = await client.get(f"/runs/{failed.run_id}")
    assert f'action="/jobs/{key}/retry"' not in page.text
    assert "This job completed later" in page.text
