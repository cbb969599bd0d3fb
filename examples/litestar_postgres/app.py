"""Litestar on PostgreSQL, wired to Conveyor by one plugin.

* ``POST /queue/example``, ``/queue/email`` and ``/queue/delayed`` enqueue the demo tasks
  through an injected ``Queue``;
* ``POST /signup`` enqueues a task of another module's registry;
* ``POST /tasks/{task}`` and ``GET /tasks/jobs/{key}`` trigger any task and read its
  status (``conveyor.integrations.litestar.status_router``);
* ``cleanup_inactive_users`` runs daily at 03:00, America/New_York;
* the console is at ``/queue``.

Run it from the repository's root (see README.md next to this file)::

    .venv/bin/uvicorn --factory examples.litestar_postgres.app:create_app

The queue lives in ``DATABASE_URL``'s database, in a schema of its own.
A worker runs inside the web process unless ``RUN_WORKER=0``; in production run it as its
own process: ``conveyor examples.litestar_postgres.app.worker_settings``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Litestar, post
from litestar.params import JSONBody

from conveyor import Job
from conveyor.integrations import Conveyor, QueueConfig
from conveyor.integrations.litestar import ConveyorPlugin, QueueDependency, status_router

from . import tasks, users

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres?schema=conveyor_example"


@dataclass
class ExampleRequest:
    message: str = "Hello from the queue!"


@dataclass
class EmailRequest:
    to: str
    subject: str
    email_body: str


@dataclass
class DelayedRequest:
    message: str
    delay_seconds: float = 30.0


@dataclass
class SignupRequest:
    user_id: int


def queued(job: Job | None) -> dict[str, Any]:
    """The answer to an enqueue: the job's key and where its status is read."""
    assert job is not None
    return {"job_key": job.key, "status": "queued", "status_url": f"/tasks/jobs/{job.key}"}


@post("/queue/example", status_code=202)
async def enqueue_example(queue: QueueDependency, data: JSONBody[ExampleRequest]) -> dict[str, Any]:
    return queued(await tasks.example_task.enqueue(queue, message=data.message))


@post("/queue/email", status_code=202)
async def enqueue_email(queue: QueueDependency, data: JSONBody[EmailRequest]) -> dict[str, Any]:
    job = await tasks.send_email.enqueue(
        queue, to=data.to, subject=data.subject, email_body=data.email_body
    )
    return queued(job)


@post("/queue/delayed", status_code=202)
async def enqueue_delayed(queue: QueueDependency, data: JSONBody[DelayedRequest]) -> dict[str, Any]:
    later = tasks.delayed_task.options(scheduled=time.time() + data.delay_seconds)
    return queued(await later.enqueue(queue, message=data.message))


@post("/signup", status_code=202)
async def signup(queue: QueueDependency, data: JSONBody[SignupRequest]) -> dict[str, Any]:
    return queued(await users.send_welcome_email.enqueue(queue, user_id=data.user_id))


def build_conveyor(url: str | None = None, run_worker: bool = False) -> Conveyor:
    """The app's queues: one, on PostgreSQL, with the tasks of two modules."""
    config = QueueConfig(
        "default",
        url=url or os.environ.get("DATABASE_URL", DEFAULT_URL),
        tasks=[tasks.registry, users.registry],
        cron_tz=ZoneInfo("America/New_York"),
        concurrency=10,
    )
    return Conveyor(config, run_workers=run_worker)


def create_app(url: str | None = None, run_worker: bool | None = None) -> Litestar:
    """The application; ``url`` is the queue's (``DATABASE_URL``, else local PostgreSQL)."""
    if run_worker is None:
        run_worker = os.environ.get("RUN_WORKER", "1") != "0"
    conveyor = build_conveyor(url, run_worker)
    return Litestar(
        route_handlers=[
            enqueue_example,
            enqueue_email,
            enqueue_delayed,
            signup,
            status_router(conveyor, path="/tasks"),
        ],
        # Without CONVEYOR_AUTH_PASSWORD (or a token) in the environment, the console
        # serves this machine only; with it, it asks for that password.
        plugins=[ConveyorPlugin(conveyor, console_path="/queue", title="Litestar: jobs")],
    )


def worker_settings() -> dict[str, Any]:
    """The worker's settings, for ``conveyor examples.litestar_postgres.app.worker_settings``."""
    return build_conveyor().worker_settings("default")
