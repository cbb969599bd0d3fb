"""Crash recovery: kill a worker in the middle of a job, watch another one take the job over.

Run ``python crash_recovery.py`` from this directory: it starts its two workers itself, as
``python -m conveyor crash_recovery.settings``, and plays the producer.
"""

import asyncio
import sys
import time

from conveyor import Queue, Status
from conveyor.types import Context


async def render_video(ctx: Context, *, name: str) -> str:
    await asyncio.sleep(2)
    return f"{name} rendered"


# --8<-- [start:settings]
queue = Queue.from_url("sqlite:///crash.db")

settings = {
    "queue": queue,
    "functions": [render_video],
    # Short lease and sweep for the demonstration: recovery within 2 + 1 seconds.
    # The defaults, 15 s and 5 s, recover within 20 seconds.
    "lease_s": 2,
    "timers": {"sweep": 1},
}
BOUND_S = 2 + 1
# --8<-- [end:settings]


async def start_worker() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "conveyor", "crash_recovery.settings"
    )


async def wait_for(key: str, wanted: Status) -> None:
    def seen(_key: str, status: Status) -> bool:
        return status == wanted

    await queue.listen([key], seen, timeout=30)


async def main() -> None:
    first = await start_worker()
    # retries=2: a second attempt is allowed, so the recovered job runs again.
    job = await queue.enqueue("render_video", name="intro.mp4", retries=2)
    assert job is not None
    await wait_for(job.key, Status.ACTIVE)
    print("the first worker started the job")

    first.kill()  # SIGKILL: no graceful shutdown, the job is left active
    await first.wait()
    killed_at = time.monotonic()
    print("killed the first worker")

    second = await start_worker()
    try:
        await job.refresh(until_complete=30)
        elapsed = time.monotonic() - killed_at
    finally:
        second.terminate()  # SIGTERM: a graceful stop
        await second.wait()
    print(f"{job.status.value} after {job.attempts} attempts: {job.result}")
    # The second worker needs up to BOUND_S to recover the job, then 2 s to run it.
    print(f"finished {elapsed:.1f} s after the kill (at most {BOUND_S} + 2 s, plus start-up)")
    await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
