"""The Litestar adapter: the plugin's lifespan, injected queues and the mounted console."""

# No ``from __future__ import annotations``: Litestar reads the handlers' annotations.

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("litestar")

from integration_support import two_queues
from litestar import Litestar, post
from litestar.testing import AsyncTestClient

from conveyor.integrations import Conveyor, QueueConfig
from conveyor.integrations.litestar import (
    ConveyorDependency,
    ConveyorPlugin,
    QueueDependency,
    provide_queue,
)
from conveyor.testing.backends import isolated_url


async def test_the_plugin_injects_queues_and_mounts_the_console(tmp_path: Path) -> None:
    conveyor = two_queues(tmp_path)

    @post("/greet", dependencies={"emails": provide_queue(conveyor, "emails")})
    async def start(
        queue: QueueDependency, emails: QueueDependency, conveyor: ConveyorDependency
    ) -> dict[str, Any]:
        job = await queue.enqueue("greet", name="Ada")
        assert job is not None
        return {"key": job.key, "emails": emails.name, "queues": len(conveyor.queues)}

    app = Litestar(
        route_handlers=[start],
        plugins=[ConveyorPlugin(conveyor, console_path="/queue", title="Lit")],
    )
    # Litestar's own test client runs the application's lifespan, the plugin's included.
    async with AsyncTestClient(app) as client:
        assert conveyor.queue("emails")._connected
        answer = await client.post("/greet")
        assert answer.status_code == 201, answer.text
        assert answer.json()["emails"] == "emails" and answer.json()["queues"] == 2
        assert await conveyor.queue().job(answer.json()["key"]) is not None
        # Its client is not this machine: the console, without credentials, refuses it.
        console = await client.get("/queue/api/me")
        assert console.status_code == 401 and console.json()["error"]["type"] == "unauthorized"
    assert not conveyor.queue()._connected


async def test_the_default_queue_is_the_first_when_none_is_named_default(
    tmp_path: Path,
) -> None:
    conveyor = Conveyor(QueueConfig("emails", url=isolated_url("sqlite", tmp_path)))

    @post("/")
    async def which(queue: QueueDependency) -> dict[str, str]:
        return {"queue": queue.name}

    app = Litestar(route_handlers=[which], plugins=[ConveyorPlugin(conveyor)])
    async with AsyncTestClient(app) as client:
        assert (await client.post("/")).json() == {"queue": "emails"}
