"""FastAPI on SQLite, wired to Conveyor in a few lines.

* ``POST /reports`` enqueues a report through a typed ``Queue`` dependency;
* ``POST /tasks/{task}`` and ``GET /tasks/jobs/{key}`` trigger any task and read its
  status, result, progress and runs (``conveyor.integrations.fastapi.status_router``);
* the console is at ``/admin/queue``, open to the app's own users only: the same check
  (an ``X-User`` header or a ``user`` cookie, against an allow-list) guards both.

Run it from the repository's root (see README.md next to this file)::

    .venv/bin/uvicorn --factory examples.fastapi_sqlite.app:create_app

A worker runs inside the web process unless ``RUN_WORKER=0``; in production run it as its
own process instead: ``conveyor examples.fastapi_sqlite.app.worker_settings``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from conveyor import Queue
from conveyor.integrations import Conveyor, QueueConfig
from conveyor.integrations.fastapi import (
    console_auth,
    mount_console,
    queue_dependency,
    status_router,
)

from .tasks import build_report, registry

DEFAULT_URL = "sqlite:///fastapi-example.db"

#: The application's users and their roles (a real app reads its user table).
USERS = {"ada": "admin", "grace": "viewer"}


@dataclass(frozen=True)
class User:
    name: str
    role: str


def current_user(connection: HTTPConnection) -> User | None:
    """The app's own user check: who is signed in, or None."""
    name = connection.headers.get("x-user") or connection.cookies.get("user")
    if name is None or name not in USERS:
        return None
    return User(name, USERS[name])


def require_user(connection: HTTPConnection) -> User:
    """The same check as a FastAPI dependency: 401 for anyone the app does not know."""
    user = current_user(connection)
    if user is None:
        raise HTTPException(status_code=401, detail="sign in first")
    return user


CurrentUser = Annotated[User, Depends(require_user)]
DefaultQueue = Annotated[Queue, Depends(queue_dependency("default"))]


class ReportRequest(BaseModel):
    pages: int = 5
    seconds_per_page: float = 1.0


def build_conveyor(url: str | None = None, run_worker: bool = False) -> Conveyor:
    """The app's queues: one, on SQLite."""
    config = QueueConfig(
        "default",
        url=url or os.environ.get("CONVEYOR_URL", DEFAULT_URL),
        tasks=[registry],
        concurrency=4,
    )
    return Conveyor(config, run_workers=run_worker)


def create_app(url: str | None = None, run_worker: bool | None = None) -> FastAPI:
    """The application; ``url`` is the queue's (``CONVEYOR_URL``, else a SQLite file)."""
    if run_worker is None:
        run_worker = os.environ.get("RUN_WORKER", "1") != "0"
    conveyor = build_conveyor(url, run_worker)
    app = FastAPI(title="Reports", lifespan=conveyor.lifespan)

    @app.post("/reports", status_code=202)
    async def start_report(
        body: ReportRequest, user: CurrentUser, queue: DefaultQueue
    ) -> dict[str, Any]:
        # The typed handle checks the arguments and brings the task's timeout along.
        job = await build_report.options(meta={"requested_by": user.name}).enqueue(
            queue, pages=body.pages, seconds_per_page=body.seconds_per_page
        )
        assert job is not None
        return {"key": job.key, "status_url": f"/tasks/jobs/{job.key}"}

    app.include_router(status_router(conveyor, dependencies=[Depends(require_user)]))
    mount_console(
        app,
        "/admin/queue",
        conveyor,
        auth=console_auth(
            current_user, role=lambda user: "admin" if user.role == "admin" else "read"
        ),
        title="Reports: jobs",
    )
    return app


def worker_settings() -> dict[str, Any]:
    """The worker's settings, for ``conveyor examples.fastapi_sqlite.app.worker_settings``."""
    return build_conveyor().worker_settings("default")
