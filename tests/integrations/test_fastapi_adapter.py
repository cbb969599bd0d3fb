"""The FastAPI adapter: typed queue dependencies and a documented status router."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.

from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("fastapi")

import fastapi
from integration_support import serve, two_queues

from conveyor import Queue
from conveyor.integrations import Conveyor
from conveyor.integrations.fastapi import conveyor_dependency, queue_dependency, status_router

Emails = Annotated[Queue, fastapi.Depends(queue_dependency("emails"))]
Default = Annotated[Queue, fastapi.Depends(queue_dependency())]
Holder = Annotated[Conveyor, fastapi.Depends(conveyor_dependency)]


async def test_fastapi_injects_typed_queues(tmp_path: Path) -> None:
    conveyor = two_queues(tmp_path)
    app = fastapi.FastAPI(lifespan=conveyor.lifespan)

    @app.post("/greet", status_code=202)
    async def start(default: Default, emails: Emails, holder: Holder) -> dict[str, Any]:
        job = await default.enqueue("greet", name="Ada")
        assert job is not None and holder is conveyor
        return {"key": job.key, "emails": emails.name}

    async with serve(app) as client:
        answer = await client.post("/greet")
        assert answer.status_code == 202, answer.text
        assert answer.json()["emails"] == "emails"
        job = await conveyor.queue().job(answer.json()["key"])
        assert job is not None and job.kwargs == {"name": "Ada"}


def test_the_fastapi_status_router_documents_its_models(tmp_path: Path) -> None:
    app = fastapi.FastAPI()
    app.include_router(status_router(two_queues(tmp_path), tags=["jobs"]))
    document = app.openapi()
    trigger = document["paths"]["/tasks/{task_name}"]["post"]
    assert trigger["tags"] == ["jobs"]
    accepted = trigger["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted == {"$ref": "#/components/schemas/JobAcceptedModel"}
    assert trigger["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProblemModel"
    }
    status = document["paths"]["/tasks/jobs/{key}"]["get"]["responses"]["200"]
    assert status["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobReportModel"
    }
    report = document["components"]["schemas"]["JobReportModel"]["properties"]
    assert {"status", "result", "error", "progress", "runs"} <= set(report)
