"""The console's defences: local mode never trusts a proxy, response headers, sign-in
throttling, probes without credentials, and saying how to set credentials."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conveyor import Queue
from conveyor.admin import Admin
from conveyor.web import create_app
from conveyor.web.app import console_of
from conveyor.web.server import serve

Clients = Callable[..., httpx.AsyncClient]

#: What nginx sends with ``proxy_pass http://127.0.0.1:8000;`` and the usual extra lines,
#: one header at a time (with none of them, see the ``behind_proxy`` test).
PROXY_HEADERS = [
    {"X-Forwarded-For": "203.0.113.9"},
    {"X-Forwarded-Proto": "https"},
    {"X-Forwarded-Host": "queue.example.com"},
    {"Forwarded": "for=203.0.113.9;proto=https"},
    {"X-Real-IP": "203.0.113.9"},
    {"Via": "1.1 proxy.example.com"},
]


@pytest.mark.parametrize("headers", PROXY_HEADERS, ids=lambda h: next(iter(h)))
async def test_local_mode_refuses_a_request_that_came_through_a_proxy(
    admin: Admin, client_factory: Clients, headers: dict[str, str]
) -> None:
    # The proxy connects from 127.0.0.1 and keeps nginx's default Host (the upstream's).
    client = client_factory(create_app(admin), base_url="http://127.0.0.1:8000")
    assert (await client.get("/api/overview")).status_code == 200
    proxied = await client.get("/api/overview", headers=headers)
    assert proxied.status_code == 401
    assert "CONVEYOR_AUTH_PASSWORD" in proxied.json()["error"]["message"]
    page = await client.get("/", headers=headers)
    assert page.status_code == 401 and "CONVEYOR_AUTH_PASSWORD" in page.text


async def test_a_console_behind_a_proxy_without_credentials_lets_nobody_in(
    admin: Admin, client_factory: Clients
) -> None:
    # nginx's bare proxy_pass adds no header at all: only the setting can tell.
    client = client_factory(create_app(admin, behind_proxy=True), base_url="http://127.0.0.1:8000")
    assert (await client.get("/api/overview")).status_code == 401
    assert (await client.get("/")).status_code == 401


async def test_a_console_without_credentials_says_how_to_set_them(
    admin: Admin, client_factory: Clients
) -> None:
    public = client_factory(create_app(admin, public=True))
    login = await public.get("/login")
    assert login.status_code == 401
    assert "CONVEYOR_AUTH_PASSWORD" in login.text and "CONVEYOR_AUTH_USER" in login.text
    local = client_factory(create_app(admin))
    assert "CONVEYOR_AUTH_PASSWORD" in (await local.get("/login")).text


async def test_a_public_console_without_credentials_warns_at_start_up(
    admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="conveyor.web")
    started = asyncio.Event()
    task = asyncio.create_task(serve(admin, "0.0.0.0", 0, started=started))
    try:
        await asyncio.wait_for(started.wait(), 10)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("lets nobody in" in w and "CONVEYOR_AUTH_PASSWORD" in w for w in warnings)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_every_response_forbids_framing_and_foreign_scripts(
    admin: Admin, client_factory: Clients
) -> None:
    client = client_factory(create_app(admin))
    for path in ("/", "/runs", "/api/overview", "/static/console.js", "/no-such-page"):
        response = await client.get(path)
        assert response.headers["x-frame-options"] == "DENY", path
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, path
        assert "'unsafe-inline'" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_failed_sign_ins_are_throttled_per_user(
    admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    app = create_app(admin, auth=credentials)
    clock = [1000.0]
    console_of(app).gate.throttle.clock = lambda: clock[0]
    form = client_factory(app)
    for _ in range(5):
        wrong = await form.post("/login", data={"username": "ops", "password": "guess"})
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    # The right password is refused too while the user is locked, with a visible message.
    locked = await form.post("/login", data={"username": "ops", "password": "ops-password"})
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert int(locked.headers["retry-after"]) == 300
    # The same user from another address, and over Basic auth: locked as well.
    elsewhere = client_factory(app, host="198.51.100.7")
    basic = await elsewhere.get("/api/me", auth=("ops", "ops-password"))
    assert basic.status_code == 429 and basic.json()["error"]["type"] == "throttled"
    # Another user is not affected.
    viewer = await elsewhere.get("/api/me", auth=("viewer", "viewer-password"))
    assert viewer.status_code == 200
    # The lock ends when the failures leave the window; success forgets them.
    clock[0] += 301
    signed_in = await form.post("/login", data={"username": "ops", "password": "ops-password"})
    assert signed_in.status_code == 303


async def test_failed_sign_ins_are_throttled_per_client(
    admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    app = create_app(admin, auth=credentials)
    guesser = client_factory(app, host="203.0.113.9")
    for n in range(20):  # a different user name each time: no user reaches its limit
        wrong = await guesser.get("/api/me", auth=(f"user{n}", "guess"))
        assert wrong.status_code == 401
    refused = await guesser.get("/api/me", auth=("viewer", "viewer-password"))
    assert refused.status_code == 429 and "retry-after" in refused.headers
    other = client_factory(app, host="198.51.100.7")
    assert (await other.get("/api/me", auth=("viewer", "viewer-password"))).status_code == 200


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_probes_answer_without_credentials_and_reveal_nothing(
    admin: Admin, credentials: list[Any], client_factory: Clients
) -> None:
    client = client_factory(create_app(admin, auth=credentials, public=True), host="203.0.113.9")
    assert (await client.get("/api/overview")).status_code == 401
    live = await client.get("/livez")
    ready = await client.get("/readyz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    opted_out = client_factory(create_app(admin, auth=credentials, health_probes=False))
    assert (await opted_out.get("/livez")).status_code == 404
    assert (await opted_out.get("/readyz")).status_code == 404


async def test_readiness_is_503_when_the_backend_does_not_answer(
    client_factory: Clients,
) -> None:
    # A Redis URL where nothing listens: a real refused connection, not a stand-in.
    pytest.importorskip("redis")
    queue = Queue.from_url(f"redis://127.0.0.1:{_closed_port()}/0?prefix=probe-test")
    down = Admin(queue)
    try:
        client = client_factory(create_app(down, public=True))
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (503, {"status": "unavailable"})
        assert (await client.get("/livez")).status_code == 200
    finally:
        with contextlib.suppress(Exception):
            await down.disconnect()
