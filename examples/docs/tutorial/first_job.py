"""A first job: a task, a queue, a worker and a producer in one program."""

import asyncio

from conveyor import Queue, Worker
from conveyor.types import Context


# A task takes the worker's context first, then keyword arguments.
async def add(ctx: Context, *, a: int, b: int) -> int:
    return a + b


async def main() -> None:
    # The default backend: an SQLite file, created on first use.
    queue = Queue.from_url("sqlite:///first-job.db")
    worker = Worker(queue, functions=[add])
    running = asyncio.create_task(worker.start())

    # Enqueue a job and wait for its result.
    print("1 + 2 =", await queue.apply("add", a=1, b=2))

    await worker.stop()
    await running


if __name__ == "__main__":
    asyncio.run(main())
