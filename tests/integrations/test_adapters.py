"""The Starlette adapter: lifespan state, queue lookup, the console behind the app's users."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from integration_support import serve, two_queues
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from conveyor import ConfigurationError
from conveyor.integrations.starlette import console_auth, get_conveyor, get_queue, mount_console


async def describe(request: Request) -> JSONResponse:
    """What a handler finds on the request."""
    emails = get_queue(request, "emails")
    return JSONResponse(
        {
            "default": get_queue(request).name,
            "emails": emails.name,
            "state_queue": request.state.queue.name,
            "same_holder": get_conveyor(request) is request.state.conveyor,
            "connected": emails._connected,
            "db": getattr(request.state, "db", None),
        }
    )


async def test_the_lifespan_puts_the_queues_on_request_state(tmp_path: Path) -> None:
    conveyor = two_queues(tmp_path)
    app = Starlette(routes=[Route("/", describe)], lifespan=conveyor.lifespan)
    async with serve(app) as client:
        assert (await client.get("/")).json() == {
            "default": "default",
            "emails": "emails",
            "state_queue": "default",
            "same_holder": True,
            "connected": True,
            "db": None,
        }
    assert not conveyor.queue("emails")._connected


async def test_the_lifespan_composes_with_the_apps_own(tmp_path: Path) -> None:
    conveyor = two_queues(tmp_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with conveyor.lifespan(app) as state:
            yield {**state, "db": "postgres"}

    app = Starlette(routes=[Route("/", describe)], lifespan=lifespan)
    async with serve(app) as client:
        assert (await client.get("/")).json()["db"] == "postgres"


async def test_without_the_lifespan_get_queue_says_what_to_do() -> None:
    app = Starlette(routes=[Route("/", describe)])
    async with serve(app) as client:
        with pytest.raises(ConfigurationError, match=r"pass lifespan=conveyor\.lifespan"):
            await client.get("/")


async def test_an_unknown_queue_name_is_an_error_naming_the_queues(tmp_path: Path) -> None:
    async def sms(request: Request) -> JSONResponse:
        return JSONResponse({"name": get_queue(request, "sms").name})

    conveyor = two_queues(tmp_path)
    app = Starlette(routes=[Route("/", sms)], lifespan=conveyor.lifespan)
    async with serve(app) as client:
        with pytest.raises(ConfigurationError, match="no queue named 'sms'; the queues are"):
            await client.get("/")


class Account:
    def __init__(self, username: str, staff: bool) -> None:
        self.username = username
        self.staff = staff


ACCOUNTS = {"t-ada": Account("ada", staff=True), "t-bob": Account("bob", staff=False)}


async def account_of(connection: HTTPConnection) -> Account:
    """An app's async user check that raises 401, as a FastAPI dependency does."""
    account = ACCOUNTS.get(connection.headers.get("x-token", ""))
    if account is None:
        raise HTTPException(401, "who are you?")
    return account


async def test_the_console_mounts_in_a_route_list_behind_the_apps_users(tmp_path: Path) -> None:
    conveyor = two_queues(tmp_path)
    routes: list[BaseRoute] = [Route("/", describe)]
    auth = console_auth(account_of, role=lambda account: "admin" if account.staff else None)
    mount_console(routes, "ops/queue/", conveyor, auth=auth)
    app = Starlette(routes=routes, lifespan=conveyor.lifespan)
    async with serve(app) as client:
        assert (await client.get("/ops/queue/api/me")).status_code == 401
        refused = await client.get("/ops/queue/api/me", headers={"X-Token": "t-bob"})
        assert refused.status_code == 401, "a user whose role is None is refused"
        me = await client.get("/ops/queue/api/me", headers={"X-Token": "t-ada"})
        assert me.status_code == 200
        assert (me.json()["name"], me.json()["role"]) == ("ada", "admin")
        page = await client.get("/ops/queue/", headers={"X-Token": "t-ada"})
        assert 'href="/ops/queue/runs"' in page.text


async def test_console_auth_lets_other_errors_through() -> None:
    def broken(connection: HTTPConnection) -> None:
        raise HTTPException(500, "the user database is down")

    check = console_auth(broken)
    with pytest.raises(HTTPException, match="database is down"):
        await check(HTTPConnection({"type": "http", "headers": []}))  # type: ignore[misc]
