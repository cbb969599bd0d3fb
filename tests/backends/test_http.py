"""The HTTP queue beyond the conformance suite: the proxy's auth hook and served kinds, which
requests are sent again after a lost reply (and which never are), bounded waits, the
``http`` extra, SAQ's ``HttpProxy.process`` form, and remote workers' leases across a
restart of the proxy."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from conveyor.backends.base import DetectsDeadOwners, Lease
from conveyor.backends.http import HttpBackend
from conveyor.backends.http.wire import OPERATIONS
from conveyor.errors import (
    AccessDeniedError,
    BackendError,
    ConfigurationError,
    InvalidUrlError,
    MissingDependencyError,
)
from conveyor.job import Status
from conveyor.queue import Queue
from conveyor.queue.http import PRODUCER_KINDS, HttpProxy, HttpQueue, ProxyRequest
from conveyor.testing.faults import FaultProxy
from conveyor.testing.fixtures import backend_url_for
from conveyor.testing.helpers import wait_until
from conveyor.testing.http_server import ProxyServer

TOKEN = "s3cret"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Queue]:
    """The application's own queue, on SQLite, that the proxies under test serve."""
    queue = Queue.from_url(f"sqlite:///{tmp_path / 'app.db'}")
    await queue.connect()
    yield queue
    await queue.disconnect()


def client_of(app: Any, **options: Any) -> HttpQueue:
    """An HttpQueue talking to ``app`` in this process (no server, no port)."""
    return HttpQueue("http://app.test/queue", transport=httpx.ASGITransport(app=app), **options)


def bearer(request: ProxyRequest) -> bool:
    return request.headers.get("authorization") == f"Bearer {TOKEN}"


async def test_the_auth_hook_refuses_calls_without_credentials(served: Queue) -> None:
    proxy = HttpProxy(served, auth=bearer)
    stranger = client_of(proxy)
    with pytest.raises(AccessDeniedError) as refused:
        await stranger.enqueue("echo", key="sneaky")
    assert refused.value.status == 401 and "headers=" in str(refused.value)
    assert await served.job("sneaky") is None
    # Refused before anything is looked up: a stranger learns no queue name.
    with pytest.raises(AccessDeniedError):
        await client_of(proxy, name="payroll").connect()

    friend = client_of(proxy, headers={"Authorization": f"Bearer {TOKEN}"})
    job = await friend.enqueue("echo", key="welcome")
    assert job is not None and (await served.job("welcome")) is not None
    await friend.disconnect()
    await stranger.disconnect()


async def test_the_auth_hook_sees_the_kind_and_may_raise_403(served: Queue) -> None:
    seen: list[str] = []

    async def producers_only(request: ProxyRequest) -> bool:
        seen.append(request.kind)
        if request.kind == "claim":
            raise HTTPException(403, "producers may not claim")
        return True

    queue = client_of(HttpProxy(served, auth=producers_only))
    assert await queue.enqueue("echo", key="a") is not None
    with pytest.raises(AccessDeniedError) as refused:
        await queue.dequeue()
    assert refused.value.status == 403 and "producers may not claim" in str(refused.value)
    assert seen == ["hello", "enqueue", "claim"]
    stored = await served.job("a")
    assert stored is not None and stored.status == Status.QUEUED
    await queue.disconnect()


async def test_drop_is_refused_unless_served_and_storage_stays(served: Queue) -> None:
    queue = client_of(HttpProxy(served))
    await queue.enqueue("echo", key="kept")
    with pytest.raises(ConfigurationError, match="does not serve 'drop'"):
        await queue.backend.drop()
    assert await served.job("kept") is not None
    await queue.disconnect()


async def test_a_producer_proxy_refuses_workers(served: Queue) -> None:
    queue = client_of(HttpProxy(served, kinds=PRODUCER_KINDS))
    job = await queue.enqueue("echo", key="p")
    assert job is not None and (await queue.job("p")) is not None
    with pytest.raises(ConfigurationError, match="does not serve 'claim'"):
        await queue.dequeue()
    with pytest.raises(ConfigurationError, match="does not serve 'abort'"):
        await queue.abort(job)
    await queue.disconnect()


async def test_a_queue_the_proxy_does_not_serve_is_named(served: Queue) -> None:
    queue = client_of(HttpProxy(served), name="emails")
    with pytest.raises(ConfigurationError, match="no queue 'emails' here; served: 'default'"):
        await queue.connect()


async def test_no_client_can_end_other_workers_leases_through_the_proxy(served: Queue) -> None:
    proxy = HttpProxy(served, kinds=OPERATIONS)  # even a proxy that serves every kind
    answer = json.loads(await proxy.process('{"kind": "expire_dead_leases", "now": 0}'))
    assert answer["error"]["message"] == "unknown kind 'expire_dead_leases'"


async def test_blocking_waits_are_bounded_by_the_proxy(served: Queue) -> None:
    queue = client_of(HttpProxy(served, max_wait_s=0.1), max_wait_s=300)
    await queue.connect()
    started = time.monotonic()
    # Nothing will wake either wait: the proxy's cap ends each one.
    await asyncio.wait_for(queue.backend.wait_for_work(120), 10)
    await queue.enqueue("echo", key="w")
    await asyncio.wait_for(queue.backend.wait_for_finish(["w"], 120), 10)
    assert time.monotonic() - started < 10
    await queue.disconnect()


async def test_saq_style_process_in_an_applications_own_route(served: Queue) -> None:
    proxy = HttpProxy(served)

    async def endpoint(request: Request) -> Response:
        return Response(await proxy.process(await request.body()), media_type="application/json")

    app = Starlette(routes=[Route("/queue", endpoint, methods=["POST"])])
    queue = client_of(app)
    job = await queue.enqueue("echo", key="via-process")
    assert job is not None
    assert await queue.count("queued") == 1
    with pytest.raises(ConfigurationError, match="does not serve 'drop'"):
        await queue.backend.drop()  # errors travel inside the answer, status 200
    await queue.disconnect()


async def test_a_mounted_proxy_serves_under_its_path(served: Queue) -> None:
    app = Starlette(routes=[Mount("/queue", app=HttpProxy(served))])
    queue = HttpQueue("http://app.test/queue/", transport=httpx.ASGITransport(app=app))
    assert await queue.enqueue("echo", key="m") is not None
    assert (await queue.info())["queued"] == 1
    await queue.disconnect()


class RefusesConnections(httpx.AsyncBaseTransport):
    """A transport whose first connections are refused: the requests never leave."""

    def __init__(self, app: Any, refusals: int) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.refusals = refusals
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refusals:
            self.refusals -= 1
            raise httpx.ConnectError("connection refused", request=request)
        self.sent.append(request.content.decode())
        return await self.inner.handle_async_request(request)


async def test_a_request_that_never_left_is_sent_again_whatever_it_is(served: Queue) -> None:
    transport = RefusesConnections(HttpProxy(served), refusals=0)
    queue = HttpQueue("http://app.test/queue", transport=transport, attempts=3)
    await queue.connect()
    transport.refusals = 2
    assert await queue.enqueue("echo", key="persistent") is not None
    transport.refusals = 2
    claimed = await queue.backend.claim("w", 1, 60, time.time())
    assert [row.key for row in claimed] == ["persistent"]
    assert [body.count('"kind":"enqueue"') for body in transport.sent].count(1) == 1
    transport.refusals = 3  # more than attempts: the caller hears of it
    with pytest.raises(BackendError, match="could not be reached"):
        await queue.enqueue("echo", key="never")
    assert await served.job("never") is None
    await queue.disconnect()


# Lost replies, with a real server behind a fault proxy.


@pytest.fixture
async def through_faults(tmp_path: Path) -> AsyncIterator[tuple[HttpQueue, Queue, FaultProxy]]:
    backend_url = f"sqlite:///{tmp_path / 'faults.db'}"
    direct = Queue.from_url(backend_url)
    await direct.connect()
    with ProxyServer() as server, FaultProxy("127.0.0.1", server.port) as faults:
        queue = HttpQueue.from_url(faults.url(server.url_for(backend_url)), attempts=3)
        await queue.connect()
        try:
            yield queue, direct, faults
        finally:
            await queue.disconnect()
            await direct.disconnect()


async def test_a_read_whose_reply_was_lost_is_sent_again(
    through_faults: tuple[HttpQueue, Queue, FaultProxy],
) -> None:
    queue, _, faults = through_faults
    await queue.enqueue("echo", key="r")
    faults.drop_next_reply()
    job = await queue.job("r")
    assert job is not None and job.key == "r"
    assert faults.replies_dropped == 1


async def test_a_claim_whose_reply_was_lost_is_never_sent_again(
    through_faults: tuple[HttpQueue, Queue, FaultProxy],
) -> None:
    queue, direct, faults = through_faults
    await queue.enqueue("echo", key="one")
    await queue.enqueue("echo", key="two")
    faults.drop_next_reply()
    with pytest.raises(BackendError, match="claim failed"):
        await queue.backend.claim("w", 1, 60, time.time())
    assert faults.replies_dropped == 1
    # The lost claim took one job; a second send would have taken the other.
    assert await direct.count("active") == 1
    assert await direct.count("queued") == 1


async def test_an_enqueue_whose_reply_was_lost_is_never_sent_again(
    through_faults: tuple[HttpQueue, Queue, FaultProxy],
) -> None:
    queue, direct, faults = through_faults
    faults.drop_next_reply()
    with pytest.raises(BackendError, match="enqueue failed"):
        await queue.enqueue("echo", key="once")
    # It was stored by the lost request; a resend would have found a duplicate and
    # answered None instead of failing.
    assert await direct.job("once") is not None


async def test_a_proxy_out_of_reach_fails_reads_after_bounded_retries(
    through_faults: tuple[HttpQueue, Queue, FaultProxy],
) -> None:
    queue, _, faults = through_faults
    faults.cut()
    with pytest.raises(BackendError, match="could not be reached"):
        await asyncio.wait_for(queue.job("x"), 30)
    faults.heal()
    assert await queue.job("x") is None


# A restart of the proxy (a deploy of the web application).

# The web application's process: it claims a job for a worker of its own (vouched for: the
# control) and serves a proxy; prints the control's key and the proxy's URL, then waits to
# be killed.
_WEB_APP = """
import asyncio, sys, time
from conveyor.queue import Queue
from conveyor.testing.http_server import ProxyServer

async def main(url):
    local = Queue.from_url(url)
    await local.connect()
    [row] = await local.backend.claim("local", 1, 60.0, time.time())
    with ProxyServer() as server:
        print(row.key, server.url_for(url), flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1]))
"""
REMOTE_LEASE_S = 60.0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
async def test_a_proxy_restart_leaves_remote_workers_their_jobs(kind: str, tmp_path: Path) -> None:
    """The proxy's process dies with a remote worker's job running: a direct worker's sweep
    takes over the job of the web application's own worker (the control) but not the remote
    worker's, which renews through the next proxy, and would be recovered only once its
    lease expired."""
    url = backend_url_for(kind, tmp_path)
    direct = Queue.from_url(url)
    await direct.connect()
    try:
        for key in ("first", "second"):
            await direct.enqueue("echo", key=key)
        web_app = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WEB_APP, url, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert web_app.stdout is not None
            line = await asyncio.wait_for(web_app.stdout.readline(), 30)
            control, proxy_url = line.decode().split()
            remote = HttpQueue.from_url(proxy_url)
            claimed_at = time.time()
            [row] = await remote.backend.claim("remote", 1, REMOTE_LEASE_S, claimed_at)
            lease = Lease(row.key, str(row.token))
            renewal = await remote.backend.renew("remote", [lease], REMOTE_LEASE_S, time.time())
            assert renewal.lost == []
            await remote.disconnect()
        finally:
            web_app.kill()  # the deploy
            await web_app.wait()
        backend = direct.backend
        assert isinstance(backend, DetectsDeadOwners)
        taken: list[str] = []

        async def sweep() -> bool:
            await backend.expire_dead_leases(time.time())
            rows = await direct.backend.recover("direct", 10, REMOTE_LEASE_S, time.time())
            taken.extend(row.key for row in rows)
            return control in taken

        await wait_until(sweep, timeout=20, interval=0.1, message="the control taken over")
        assert taken == [control]
        with ProxyServer() as server:  # the web application is back
            again = HttpQueue.from_url(server.url_for(url))
            renewal = await again.backend.renew("remote", [lease], REMOTE_LEASE_S, claimed_at)
            assert renewal.lost == []
            await again.disconnect()
        stored = await direct.job(row.key)
        assert stored is not None and stored.status == Status.ACTIVE
        assert stored.worker_id == "remote"
        # Its lease ends by expiry only.
        later = claimed_at + 2 * REMOTE_LEASE_S
        rows = await direct.backend.recover("direct", 10, REMOTE_LEASE_S, later)
        assert row.key in [each.key for each in rows]
    finally:
        await direct.backend.drop()
        await direct.disconnect()


# Construction.


def test_http_urls_make_http_queues_and_others_are_refused() -> None:
    queue = Queue.from_url("https://user:pw@jobs.example/queue", name="emails")
    assert isinstance(queue, HttpQueue) and isinstance(queue.backend, HttpBackend)
    assert queue.name == "emails"
    assert queue.backend.describe()["url"] == "https://user:***@jobs.example/queue"
    assert isinstance(HttpQueue.from_url("http://jobs.example/queue"), HttpQueue)
    with pytest.raises(InvalidUrlError, match="http://, https://"):
        HttpQueue.from_url("redis://localhost")
    with pytest.raises(InvalidUrlError, match="http:// or https://"):
        HttpQueue("sqlite:///jobs.db")
    with pytest.raises(ConfigurationError, match="runs_url"):
        HttpQueue.from_url("http://jobs.example/queue", runs_url="sqlite://")
    with pytest.raises(ConfigurationError, match="runs_url"):
        Queue.from_url("http://jobs.example/queue", runs_url="sqlite://")


def test_a_missing_http_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx raises ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "conveyor\[http\]"'):
        HttpQueue("http://jobs.example/queue")
    with pytest.raises(MissingDependencyError, match=r'pip install "conveyor\[http\]"'):
        Queue.from_url("http://jobs.example/queue")


async def test_refusals_and_failures_in_front_of_the_proxy_are_told_apart() -> None:
    async def guard(request: Request) -> Response:
        return Response("login first", status_code=401)

    async def gateway(request: Request) -> Response:
        return Response("bad gateway", status_code=502)

    app = Starlette(
        routes=[
            Route("/guarded", guard, methods=["POST"]),
            Route("/down", gateway, methods=["POST"]),
        ]
    )
    transport = httpx.ASGITransport(app=app)
    guarded = HttpQueue("http://app.test/guarded", transport=transport)
    with pytest.raises(AccessDeniedError) as refused:
        await guarded.connect()
    assert refused.value.status == 401
    down = HttpQueue("http://app.test/down", transport=transport, attempts=2)
    with pytest.raises(BackendError, match="answered 502: the application"):
        await down.connect()
