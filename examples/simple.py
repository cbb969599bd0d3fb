"""The smallest Conveyor program: a task, a worker and a producer in one process.

Run it with ``python examples/simple.py``. The same ``settings`` also run as a separate
worker process: ``conveyor examples.simple.settings`` (from the repository's root).
"""

import asyncio

from conveyor import Queue, Worker


async def add(ctx, *, a, b):
    return a + b


queue = Queue.from_url("sqlite:///simple-example.db")
settings = {"queue": queue, "functions": [add]}


async def main():
    await queue.connect()
    worker = Worker(**settings)
    running = asyncio.create_task(worker.start())

    print("1 + 2 =", await queue.apply("add", a=1, b=2))
    print("map:", await queue.map("add", [{"a": n, "b": n} for n in range(5)]))

    await worker.stop()
    await running
    await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
