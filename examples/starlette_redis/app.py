"""Starlette on Redis, wired to Conveyor in a few lines.

* ``POST /thumbnails`` enqueues a job and answers at once with its key;
* ``POST /sum`` runs a job and waits for its result, up to a timeout (``queue.apply``);
* ``POST /tasks/{task}`` and ``GET /tasks/jobs/{key}`` trigger any task and read its
  status (``conveyor.integrations.starlette.status_routes``);
* the console is at ``/jobs``.

Run it from the repository's root (see README.md next to this file)::

    .venv/bin/uvicorn --factory examples.starlette_redis.app:create_app

The queue lives at ``REDIS_URL`` (``redis://127.0.0.1:6379/0?prefix=starlette-example``).
A worker runs inside the web process unless ``RUN_WORKER=0``; in production run it as its
own process: ``conveyor examples.starlette_redis.app.worker_settings``.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conveyor import JobError
from conveyor.integrations import Conveyor, QueueConfig
from conveyor.integrations.starlette import get_queue, mount_console, status_routes
from conveyor.types import Context

DEFAULT_URL = "redis://127.0.0.1:6379/0?prefix=starlette-example"


async def make_thumbnail(ctx: Context, *, image: str, width: int = 128) -> dict[str, Any]:
    """Pretend to shrink an image."""
    return {"image": image, "thumbnail": f"{image.rsplit('.', 1)[0]}-{width}px.png"}


async def add(ctx: Context, *, a: int, b: int) -> int:
    """Add two numbers (somewhere else)."""
    return a + b


async def thumbnails(request: Request) -> JSONResponse:
    """Enqueue a thumbnail and answer at once; the client polls the status URL."""
    body = await request.json()
    job = await get_queue(request).enqueue(
        "make_thumbnail", image=str(body["image"]), width=int(body.get("width", 128))
    )
    assert job is not None
    return JSONResponse({"key": job.key, "status_url": f"/tasks/jobs/{job.key}"}, 202)


async def add_numbers(request: Request) -> JSONResponse:
    """Run a job and wait for its result, at most ``apply_timeout`` seconds."""
    body = await request.json()
    timeout: float = request.app.state.apply_timeout
    try:
        result = await get_queue(request).apply("add", timeout=timeout, a=body["a"], b=body["b"])
    except TimeoutError:
        return JSONResponse({"detail": f"no result within {timeout}s; try again later"}, 504)
    except JobError as exc:
        return JSONResponse({"detail": f"the job failed: {exc.job.error_summary}"}, 502)
    return JSONResponse({"result": result})


def build_conveyor(url: str | None = None, run_worker: bool = False) -> Conveyor:
    """The app's queues: one, on Redis."""
    config = QueueConfig(
        "default",
        url=url or os.environ.get("REDIS_URL", DEFAULT_URL),
        tasks=[make_thumbnail, add],
    )
    return Conveyor(config, run_workers=run_worker)


def create_app(
    url: str | None = None, run_worker: bool | None = None, apply_timeout: float = 5.0
) -> Starlette:
    """The application; ``url`` is the queue's (``REDIS_URL``, else local Redis)."""
    if run_worker is None:
        run_worker = os.environ.get("RUN_WORKER", "1") != "0"
    conveyor = build_conveyor(url, run_worker)
    routes = [
        Route("/thumbnails", thumbnails, methods=["POST"]),
        Route("/sum", add_numbers, methods=["POST"]),
        *status_routes(conveyor, "/tasks"),
    ]
    app = Starlette(routes=routes, lifespan=conveyor.lifespan)
    app.state.apply_timeout = apply_timeout
    # Without CONVEYOR_AUTH_PASSWORD (or a token) in the environment, the console serves
    # this machine only; with it, it asks for that password.
    mount_console(app, "/jobs", conveyor, title="Thumbnails: jobs")
    return app


def worker_settings() -> dict[str, Any]:
    """The worker's settings, for ``conveyor examples.starlette_redis.app.worker_settings``."""
    return build_conveyor().worker_settings("default")
