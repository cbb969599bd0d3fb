"""The console mounted under a prefix in Starlette, FastAPI and Litestar; two side by side."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from web_support import BEARER

from conveyor import Queue
from conveyor.admin import Admin
from conveyor.web import BasicAuth, create_app, litestar_handler

Clients = Callable[..., httpx.AsyncClient]
PREFIX = "/admin/queue"


def host_app(kind: str, console: Any, prefix: str = PREFIX) -> Any:
    """A host application of ``kind`` with the console mounted at ``prefix``."""
    if kind == "starlette":
        return Starlette(routes=[Mount(prefix, app=console)])
    if kind == "fastapi":
        fastapi = pytest.importorskip("fastapi")
        app = fastapi.FastAPI()

        @app.get("/")
        def home() -> dict[str, str]:
            return {"host": "fastapi"}

        app.mount(prefix, console)
        return app
    litestar = pytest.importorskip("litestar")
    return litestar.Litestar(route_handlers=[litestar_handler(console, prefix)])


@pytest.mark.parametrize("kind", ["starlette", "fastapi", "litestar"])
async def test_links_forms_and_actions_carry_the_prefix(
    kind: str, admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    client = client_factory(host_app(kind, create_app(admin, auth=credentials)))
    denied = await client.get(f"{PREFIX}/runs")
    assert denied.status_code == 303
    assert denied.headers["location"] == f"{PREFIX}/login?next=%2Fadmin%2Fqueue%2Fruns"
    signed = await client.post(
        f"{PREFIX}/login",
        data={"username": "ops", "password": "ops-password", "next": f"{PREFIX}/"},
    )
    assert signed.status_code == 303 and signed.headers["location"] == f"{PREFIX}/"
    page = await client.get(f"{PREFIX}/")
    assert page.status_code == 200
    links = re.findall(r'(?:href|action|src|data-stream)="([^"]+)"', page.text)
    assert links and all(link.startswith(PREFIX + "/") for link in links), links
    for link in links:
        if "/static/" in link:
            assert (await client.get(link)).status_code == 200
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token is not None
    enqueue = await client.post(
        f"{PREFIX}/enqueue",
        data={"csrf_token": token.group(1), "job": "greet", "mode": "form", "arg.name": kind},
    )
    assert enqueue.status_code == 303 and enqueue.headers["location"].startswith(f"{PREFIX}/runs?")
    api = await client.post(
        f"{PREFIX}/api/enqueue", json={"name": "greet", "args": {"name": kind}}, headers=BEARER
    )
    assert api.status_code == 201
    key = api.json()["key"]
    abort = await client.post(
        f"{PREFIX}/jobs/{key}/abort", data={"csrf_token": token.group(1), "next": f"{PREFIX}/jobs"}
    )
    assert abort.status_code == 303 and abort.headers["location"] == f"{PREFIX}/jobs"
    jobs = (await client.get(f"{PREFIX}/api/jobs", headers=BEARER)).json()
    assert jobs["total"] == 1 and jobs["jobs"][0]["function"] == "greet"
    document = (await client.get(f"{PREFIX}/api/openapi.json", headers=BEARER)).json()
    assert document["servers"] == [{"url": PREFIX}]
    missing = await client.get(f"{PREFIX}/api/runs/123", headers=BEARER)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "run_not_found"


async def other_task(ctx: dict[str, Any], *, colour: str) -> str:
    """The second console's only task."""
    return colour


async def test_two_consoles_in_one_app_do_not_interfere(
    admin: Admin, tmp_path: Path, client_factory: Clients
) -> None:
    other = Admin(
        Queue.from_url(f"sqlite:///{tmp_path / 'other.db'}", name="billing"),
        {"other_task": other_task},
    )
    first = create_app(admin, title="First console")
    second = create_app(
        other, title="Second console", auth=BasicAuth({"billing": ("billing-password", "admin")})
    )
    app = Starlette(routes=[Mount("/a", app=first), Mount("/b", app=second)])
    client = client_factory(app)
    try:
        page_a = await client.get("/a/")
        assert "First console" in page_a.text and 'href="/a/runs"' in page_a.text
        assert (await client.get("/b/")).status_code == 303
        jobs_a = (await client.get("/a/api/available-jobs")).json()["available_jobs"]
        jobs_b = await client.get("/b/api/available-jobs", auth=("billing", "billing-password"))
        assert "greet" in {j["name"] for j in jobs_a}
        assert [j["name"] for j in jobs_b.json()["available_jobs"]] == ["other_task"]
        # A CSRF token of console A is no good on console B, and each keeps its own cookie.
        token_a = re.search(r'name="csrf-token" content="([^"]+)"', page_a.text)
        assert token_a is not None
        refused = await client.post(
            "/b/api/enqueue",
            json={"name": "other_task", "args": {"colour": "red"}},
            auth=("billing", "billing-password"),
            headers={"X-CSRF-Token": token_a.group(1)},
        )
        assert refused.status_code == 403
        me_b = (await client.get("/b/api/me", auth=("billing", "billing-password"))).json()
        csrf_cookies = {c.path: c.name for c in client.cookies.jar if "csrf" in c.name}
        assert set(csrf_cookies) == {"/a/", "/b/"}
        assert csrf_cookies["/a/"] != csrf_cookies["/b/"]
        made = await client.post(
            "/b/api/enqueue",
            json={"name": "other_task", "args": {"colour": "red"}},
            auth=("billing", "billing-password"),
            headers={"X-CSRF-Token": me_b["csrf_token"]},
        )
        assert made.status_code == 201
        assert (await other.queues[0].job(made.json()["key"])) is not None
        assert (await admin.queues[0].job(made.json()["key"])) is None
        wrong_console = await client.post(
            "/a/api/enqueue",
            json={"name": "other_task", "args": {"colour": "red"}},
            headers={"X-CSRF-Token": token_a.group(1)},
        )
        assert wrong_console.status_code == 422
        assert (await client.get("/a/api/jobs")).json()["total"] == 0
    finally:
        await other.disconnect()
