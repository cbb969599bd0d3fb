"""SAQ's README example, run by Conveyor.

Everything down to ``settings`` is SAQ's README word for word, except the import line
(``saq`` -> ``conveyor``), the queue URL (the embedded SQLite file instead of Redis) and
``create_db``, which the README uses without defining (a stand-in is defined here). Then
``main`` runs the README's "To enqueue jobs" snippets and prints each result.

Start the worker from the repository's root, then run the producer::

    conveyor examples.saq_readme.settings
    python examples/saq_readme.py
"""

import asyncio
import time

from conveyor import CronJob, Queue


class Database:
    """A stand-in for the README's undefined ``create_db()``."""

    async def disconnect(self):
        pass

    def __repr__(self):
        return "<Database>"


async def create_db():
    return Database()


# all functions take in context dict and kwargs
async def test(ctx, *, a):
    await asyncio.sleep(0.5)
    # result should be json serializable
    # custom serializers and deserializers can be used through Queue(dump=,load=)
    return {"x": a}


async def cron(ctx):
    print("i am a cron job")


async def startup(ctx):
    ctx["db"] = await create_db()


async def shutdown(ctx):
    await ctx["db"].disconnect()


async def before_process(ctx):
    print(ctx["job"], ctx["db"])


async def after_process(ctx):
    pass


queue = Queue.from_url("sqlite:///saq-example.db")

settings = {
    "queue": queue,
    "functions": [test],
    "concurrency": 10,
    "cron_jobs": [CronJob(cron, cron="* * * * * */5")],  # run every 5 seconds
    "startup": startup,
    "shutdown": shutdown,
    "before_process": before_process,
    "after_process": after_process,
}


async def main():
    """The README's "To enqueue jobs" snippets, each result printed."""
    await queue.connect()

    # schedule a job normally
    job = await queue.enqueue("test", a=1)

    # wait for the job to complete (the README waits 1 second; we allow a slow machine 10)
    await job.refresh(10)
    print("enqueue + refresh:", job.result)

    # run a job and return the result
    print("apply:", await queue.apply("test", a=2))

    # Run multiple jobs concurrently and collect the results into a list
    print("map:", await queue.map("test", [{"a": 3}, {"a": 4}]))

    # schedule a job in 10 seconds
    scheduled = await queue.enqueue("test", a=5, scheduled=time.time() + 10)
    print("scheduled: waiting 10 seconds for it")
    await scheduled.refresh(60)
    late = (scheduled.started / 1000) - scheduled.scheduled
    print("scheduled:", scheduled.result, f"(started {late:.1f}s after its time)")

    await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
