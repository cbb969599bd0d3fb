"""The HTTP queue: a producer and a worker that reach the queue through the web application.

Needs ``conveyor[http]`` (for the clients) and ``conveyor[web]`` (Starlette and uvicorn,
for the application). The program serves the application on a free port, then enqueues a
job and runs it over HTTP.
"""

import asyncio
import os
import secrets
import socket
from typing import Any

import uvicorn
from conveyor import Queue, Worker
from conveyor.errors import AccessDeniedError
from conveyor.queue.http import HttpProxy, HttpQueue, ProxyRequest
from starlette.applications import Starlette
from starlette.routing import Mount

TOKEN = os.environ.get("QUEUE_TOKEN") or secrets.token_urlsafe(16)


async def resize(ctx: Any, *, image: str) -> str:
    return f"{image} resized"


# --8<-- [start:app]
# In the web application, which can reach the queue's store.
queue = Queue.from_url("sqlite:///jobs.db")


def bearer_token(request: ProxyRequest) -> bool:
    # Your application's own check: a token, a session, a client certificate ...
    return request.headers.get("authorization") == f"Bearer {TOKEN}"


app = Starlette(routes=[Mount("/queue", app=HttpProxy(queue, auth=bearer_token))])
# --8<-- [end:app]


async def produce_and_work(url: str) -> None:
    # --8<-- [start:clients]
    # Anywhere that can reach the application (url: "https://app.example.com/queue/").
    producer = HttpQueue.from_url(url, headers={"Authorization": f"Bearer {TOKEN}"})
    job = await producer.enqueue("resize", image="cat.png")

    # A worker over HTTP: the same Worker, on an HttpQueue.
    worker_queue = HttpQueue.from_url(url, headers={"Authorization": f"Bearer {TOKEN}"})
    worker = Worker(worker_queue, [resize])
    # --8<-- [end:clients]
    running = asyncio.create_task(worker.start())
    assert job is not None
    await job.refresh(until_complete=30)
    print("result:", job.result)
    await worker.stop()
    await running
    await producer.disconnect()
    await worker_queue.disconnect()

    # --8<-- [start:refused]
    stranger = HttpQueue.from_url(url)  # no token: the auth hook says no
    try:
        await stranger.enqueue("resize", image="dog.png")
    except AccessDeniedError as exc:
        print("refused:", exc.status)
    # --8<-- [end:refused]
    await stranger.disconnect()


async def main() -> None:
    # Serve the application on a free port (in production: uvicorn app:app, gunicorn ...).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await produce_and_work(f"http://127.0.0.1:{sock.getsockname()[1]}/queue/")
    finally:
        server.should_exit = True
        await serving
        await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
