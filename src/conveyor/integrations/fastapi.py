"""Conveyor in a FastAPI application: typed queue dependencies, status router, console.

::

    from fastapi import Depends, FastAPI
    from conveyor import Queue
    from conveyor.integrations import Conveyor, QueueConfig
    from conveyor.integrations.fastapi import (
        console_auth, mount_console, queue_dependency, status_router,
    )

    conveyor = Conveyor(QueueConfig("default", url="sqlite:///jobs.db", tasks=[report]))
    app = FastAPI(lifespan=conveyor.lifespan)
    app.include_router(status_router(conveyor, dependencies=[Depends(require_user)]))
    mount_console(app, "/admin/queue", conveyor, auth=console_auth(current_user))

    @app.post("/reports", status_code=202)
    async def start(queue: Queue = Depends(queue_dependency("default"))) -> dict[str, str]:
        job = await queue.enqueue("report")
        return {"key": job.key}
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at
# run time, and those of functions nested in a factory do not resolve from strings.

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from conveyor.errors import ConveyorError
from conveyor.integrations.core import Conveyor
from conveyor.integrations.starlette import (
    console_auth,
    get_conveyor,
    get_queue,
    mount_console,
    problem_response,
)
from conveyor.integrations.status import JobStatusService, status_path
from conveyor.queue import Queue


def queue_dependency(name: str = "default") -> Callable[[Request], Queue]:
    """A dependency giving the queue named ``name``: ``Depends(queue_dependency("emails"))``.

    Needs the application's lifespan to be the Conveyor's (``FastAPI(lifespan=...)``).
    """

    def queue(request: Request) -> Queue:
        return get_queue(request, name)

    return queue


def conveyor_dependency(request: Request) -> Conveyor:
    """A dependency giving the application's :class:`Conveyor`: ``Depends(conveyor_dependency)``."""
    return get_conveyor(request)


class RunModel(BaseModel):
    """One attempt of a job."""

    run_id: str
    queue: str
    key: str
    function: str
    attempt: int
    worker_id: str | None = None
    status: str = Field(description="running, complete, failed, aborted or retried")
    started: float | None = Field(default=None, description="epoch seconds")
    finished: float | None = None
    duration_s: float | None = None
    error: str | None = None


class JobAcceptedModel(BaseModel):
    """The job was enqueued; poll ``status_url``."""

    key: str
    queue: str
    task: str
    status: str = "queued"
    status_url: str


class JobReportModel(BaseModel):
    """A job's status, result or error, progress and runs."""

    key: str
    queue: str
    task: str
    status: str = Field(description="queued, active, aborting, complete, failed or aborted")
    result: Any = None
    error: str | None = None
    progress: float = 0.0
    attempts: int = 0
    queued: float | None = Field(default=None, description="epoch seconds")
    scheduled: float | None = Field(default=None, description="when it may start")
    started: float | None = None
    completed: float | None = None
    runs: list[RunModel] = Field(default_factory=list, description="oldest first")


class ProblemModel(BaseModel):
    """An error: what went wrong and, for arguments, what is wrong with each."""

    detail: str
    errors: dict[str, str] = Field(default_factory=dict)


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ProblemModel, "description": "Unknown task or job"},
    422: {"model": ProblemModel, "description": "Arguments that do not fit the task"},
}


def status_router(
    conveyor: Conveyor,
    *,
    prefix: str = "/tasks",
    tasks: Iterable[str] | None = None,
    **router_options: Any,
) -> APIRouter:
    """An ``APIRouter`` to trigger tasks and read their jobs' status, with typed models.

    ``POST {prefix}/{task_name}`` takes a JSON object of arguments and answers 202
    (:class:`JobAcceptedModel`, ``Location`` header), 404 or 422 (:class:`ProblemModel`);
    ``GET {prefix}/jobs/{key}`` answers :class:`JobReportModel`, or 404.

    Args:
        conveyor: The application's queues.
        prefix: The router's prefix.
        tasks: The tasks that may be triggered; all of them by default.
        **router_options: For ``APIRouter``: ``dependencies=[Depends(require_user)]``
            puts the routes behind the application's authentication, ``tags=[...]``.
    """
    service = JobStatusService(conveyor, tasks)
    router = APIRouter(prefix=prefix, **router_options)

    @router.post(
        "/{task_name}",
        status_code=202,
        response_model=JobAcceptedModel,
        responses=_ERRORS,
        summary="Trigger a task",
    )
    async def trigger_task(
        task_name: str,
        request: Request,
        args: Annotated[dict[str, Any] | None, Body(description="The task's arguments")] = None,
    ) -> Any:
        try:
            accepted = await service.trigger(task_name, args)
        except ConveyorError as exc:
            return problem_response(exc)
        location = status_path(request.url.path, accepted.key)
        content = JobAcceptedModel(**accepted.to_dict(), status_url=location)
        return JSONResponse(content.model_dump(), status_code=202, headers={"Location": location})

    @router.get(
        "/jobs/{key}",
        response_model=JobReportModel,
        responses={404: _ERRORS[404]},
        summary="A job's status, result and runs",
    )
    async def job_status(key: str) -> Any:
        try:
            report = await service.report(key)
        except ConveyorError as exc:
            return problem_response(exc)
        return report.to_dict()

    return router


__all__ = [
    "JobAcceptedModel",
    "JobReportModel",
    "ProblemModel",
    "RunModel",
    "console_auth",
    "conveyor_dependency",
    "get_conveyor",
    "get_queue",
    "mount_console",
    "queue_dependency",
    "status_router",
]
