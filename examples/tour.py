"""The README's API tour, as one program: ``python examples/tour.py``.

The README quotes the blocks between ``# --8<-- name`` markers (a test checks that it quotes
them exactly). Here the worker runs in the same process as the producer, so the program
needs nothing else; in production it is its own process: ``conveyor examples.tour.settings``.
"""

# --8<-- tasks
import asyncio
import time

from conveyor import CronJob, Queue, Registry, Worker, task


# Task functions take the context first, then keyword arguments, as in SAQ.
async def add(ctx, *, a: int, b: int) -> int:
    return a + b


# Or a typed handle: mypy checks the arguments of enqueue and apply.
@task(timeout=30, retries=3, retry_delay=1.0)
async def send_email(ctx, *, to: str, subject: str) -> str:
    return f"sent {subject!r} to {to}"


# A registry collects tasks and cron jobs from many modules.
registry = Registry()


@registry.scheduled_task("0 9 * * mon-fri", timezone="Europe/Berlin")
async def morning_report(ctx) -> None:
    print("good morning, Berlin")


async def heartbeat(ctx) -> None:
    print("cron: every 2 seconds")


# --8<--


# --8<-- settings
queue = Queue.from_url("sqlite:///tour.db", defaults={"timeout": 60, "retries": 2})

settings = {
    "queue": queue,
    "functions": [add, send_email, registry],
    "cron_jobs": [CronJob(heartbeat, cron="* * * * * */2")],
    "concurrency": 10,
    "shutdown_grace_period_s": 10,
}
# --8<--


async def produce() -> None:
    # --8<-- produce
    # Enqueue by name and wait for the result.
    job = await queue.enqueue("add", a=1, b=2)
    await job.refresh(until_complete=10)
    print("enqueue:", job.status.value, job.result)

    # Run one job, or many at once, and get the results.
    print("apply:", await queue.apply("add", a=2, b=3))
    print("map:", await queue.map("add", [{"a": 1, "b": 1}, {"a": 2, "b": 2}]))

    # A job that starts in 2 seconds, and a job key that deduplicates.
    later = await queue.enqueue("add", a=4, b=4, scheduled=time.time() + 2)
    first = await queue.enqueue("add", a=5, b=5, key="only-once")
    second = await queue.enqueue("add", a=5, b=5, key="only-once")
    print("deduplicated:", first is not None, second is None)
    await later.refresh(until_complete=30)
    print("scheduled:", later.result)

    # Typed handles: the arguments are checked against send_email's signature.
    print("task:", await send_email.apply(queue, to="ada@example.com", subject="Hi"))
    await send_email.options(key="welcome-ada").enqueue(queue, to="ada@example.com", subject="Hi")
    # --8<--


async def main() -> None:
    await queue.connect()
    worker = Worker(**settings)
    running = asyncio.create_task(worker.start())
    try:
        await produce()
    finally:
        await worker.stop()
        await running
        await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
