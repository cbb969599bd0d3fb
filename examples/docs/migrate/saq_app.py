"""A SAQ application after the move: only the import lines and the queue URL changed.

Every import path a SAQ program uses works under ``conveyor``: ``saq``, ``saq.job``,
``saq.queue``, ``saq.worker`` and ``saq.types``.
"""

# --8<-- [start:imports]
import asyncio

from conveyor import CronJob, Queue  # was: from saq import CronJob, Queue
from conveyor.job import TERMINAL_STATUSES, Job, Status  # was: from saq.job import ...
from conveyor.queue import JobError  # was: from saq.queue import JobError
from conveyor.types import Context, SettingsDict  # was: from saq.types import ...
from conveyor.worker import Worker  # was: from saq.worker import Worker

# was: Queue.from_url("redis://localhost"); a redis:// or postgresql:// URL works too
queue = Queue.from_url("sqlite:///saq-app.db")
# --8<-- [end:imports]


async def startup(ctx: Context) -> None:
    ctx["greeting"] = "hello"


async def before_process(ctx: Context) -> None:
    job: Job = ctx["job"]
    print("before", job.function, job.kwargs)


async def greet(ctx: Context, *, name: str) -> str:
    return f"{ctx['greeting']} {name}"


async def fail(ctx: Context) -> None:
    raise ValueError("nope")


async def tick(ctx: Context) -> None:
    pass


settings: SettingsDict = {
    "queue": queue,
    "functions": [greet, fail],
    "concurrency": 10,
    "cron_jobs": [CronJob(tick, cron="* * * * * */5")],
    "startup": startup,
    "before_process": before_process,
}


async def main() -> None:
    # The ignore goes once Worker accepts SettingsDict's TimersDict (mypy flags it then).
    worker = Worker(**settings)
    running = asyncio.create_task(worker.start())
    try:
        job = await queue.enqueue("greet", name="Ada")
        assert job is not None
        await job.refresh(until_complete=10)
        print(job.status == Status.COMPLETE, job.status in TERMINAL_STATUSES, job.result)
        print(await queue.map("greet", [{"name": "Bob"}, {"name": "Eve"}]))
        try:
            await queue.apply("fail")
        except JobError as exc:
            print("JobError:", exc.job.status.value, str(exc.job.error).splitlines()[-1])
    finally:
        await worker.stop()
        await running


if __name__ == "__main__":
    asyncio.run(main())
