"""Serving an ASGI application in the test's event loop, lifespan included; and the
two-queue set-up the adapters' tests share.

An ASGI server runs the application's lifespan, then hands every request a copy of the
lifespan state (``scope["state"]``). :func:`serve` does the same in process, so the
application, its in-process worker, the HTTP client and the test's ``wait_until`` share
one event loop, and an HTTP client reaches the app through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, MutableMapping
from pathlib import Path
from typing import Any

import httpx

from conveyor.integrations import Conveyor, QueueConfig
from conveyor.testing.backends import isolated_url

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Coroutine[Any, Any, None]]


async def _next_message(sent: asyncio.Queue[Message], app_task: asyncio.Task[None]) -> Message:
    """The app's next lifespan message; raises what the app raised if it ended first."""
    getter = asyncio.ensure_future(sent.get())
    await asyncio.wait({getter, app_task}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    app_task.result()  # raises the app's error
    raise RuntimeError("the application ended its lifespan without answering")


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, **client_options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan around the block; yield a client that calls it in process."""
    state: dict[str, Any] = {}
    received: asyncio.Queue[Message] = asyncio.Queue()
    sent: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": state}
    app_task: asyncio.Task[None] = asyncio.create_task(app(scope, received.get, sent.put))
    await received.put({"type": "lifespan.startup"})
    started = await _next_message(sent, app_task)
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the application failed to start: {started}")

    async def with_state(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "state": dict(state)}
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=with_state)
    client_options.setdefault("base_url", "http://localhost")
    client = httpx.AsyncClient(transport=transport, **client_options)
    try:
        yield client
    finally:
        await client.aclose()
        await received.put({"type": "lifespan.shutdown"})
        stopped = await _next_message(sent, app_task)
        await app_task
        if stopped["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"the application failed to stop: {stopped}")


async def poll_job(
    client: httpx.AsyncClient, url: str, predicate: Callable[[dict[str, Any]], bool], **kwargs: Any
) -> dict[str, Any]:
    """GET ``url`` until its JSON satisfies ``predicate``; return that JSON."""
    from conveyor.testing import wait_until

    async def check() -> dict[str, Any] | None:
        answer = await client.get(url, **kwargs)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body if predicate(body) else None

    found: dict[str, Any] = await wait_until(check, timeout=20, message=f"GET {url}")
    return found


def finished(body: dict[str, Any]) -> bool:
    """Whether a job status answer says the job has finished."""
    return body["status"] in ("complete", "failed", "aborted")


async def greet(ctx: dict[str, Any], *, name: str) -> str:
    """The task the adapters' tests trigger."""
    return f"hello {name}"


def two_queues(tmp_path: Path) -> Conveyor:
    """``default`` (with :func:`greet`) and ``emails``, on one SQLite file of the test's."""
    url = isolated_url("sqlite", tmp_path)
    return Conveyor(
        [QueueConfig("default", url=url, tasks=[greet]), QueueConfig("emails", url=url)]
    )
