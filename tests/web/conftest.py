"""Fixtures of the console tests: a SQLite queue in tmp_path, its admin service, a worker,
and HTTP clients over the ASGI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import console_tasks
import httpx
import pytest
from web_support import ADMIN_TOKEN, READ_TOKEN

from conveyor import Worker
from conveyor.admin import Admin
from conveyor.web import BasicAuth, TokenAuth

AUTH_VARIABLES = (
    "CONVEYOR_AUTH_USER",
    "CONVEYOR_AUTH_PASSWORD",
    "CONVEYOR_AUTH_READ_USER",
    "CONVEYOR_AUTH_READ_PASSWORD",
    "CONVEYOR_AUTH_TOKEN",
    "CONVEYOR_AUTH_READ_TOKEN",
    "AUTH_USER",
    "AUTH_PASSWORD",
    "CONVEYOR_SECRET_KEY",
)


@pytest.fixture(autouse=True)
def no_auth_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure authentication themselves."""
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Worker settings over a fresh SQLite file."""
    monkeypatch.setenv("CONVEYOR_WEB_TEST_DB", str(tmp_path / "queue.db"))
    return console_tasks.settings()


@pytest.fixture
async def admin(settings: dict[str, Any]) -> AsyncIterator[Admin]:
    """The admin service of the settings."""
    service = Admin.from_settings(settings)
    await service.connect()
    yield service
    await service.disconnect()


@pytest.fixture
async def worker(settings: dict[str, Any], admin: Admin) -> AsyncIterator[Worker]:
    """A worker running the test tasks in this event loop."""
    running = Worker(**settings)
    task = asyncio.create_task(running.start())

    async def published() -> bool:
        return bool(await settings["queue"].backend.workers())

    from conveyor.testing import wait_until

    await wait_until(published, timeout=10, message="the worker published its record")
    yield running
    await running.stop()
    await asyncio.wait_for(task, 10)


@pytest.fixture
def credentials() -> list[Any]:
    """An admin and a read-only user, and a token of each role."""
    return [
        BasicAuth({"ops": ("ops-password", "admin"), "viewer": ("viewer-password", "read")}),
        TokenAuth({ADMIN_TOKEN: "admin", READ_TOKEN: "read"}),
    ]


def make_client(app: Any, host: str = "127.0.0.1", **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client calling ``app`` in process, as if from ``host``."""
    transport = httpx.ASGITransport(app=app, client=(host, 43210))
    kwargs.setdefault("base_url", "http://localhost")
    return httpx.AsyncClient(transport=transport, **kwargs)


@pytest.fixture
async def client_factory() -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """Build clients; they are closed at the end of the test."""
    clients: list[httpx.AsyncClient] = []

    def build(app: Any, host: str = "127.0.0.1", **kwargs: Any) -> httpx.AsyncClient:
        client = make_client(app, host, **kwargs)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()
