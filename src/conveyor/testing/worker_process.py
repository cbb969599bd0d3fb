"""A worker process for tests: ``python -m conveyor.testing.worker_process URL QUEUE [LEASE_S]``.

It runs the functions in :mod:`conveyor.testing.tasks` with short timers, so that tests can
kill it with SIGKILL and watch another worker recover its jobs. SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from conveyor.queue import Queue
from conveyor.testing.tasks import TEST_FUNCTIONS
from conveyor.worker import Worker


async def main(url: str, queue_name: str, lease_s: float) -> None:
    """Run the test worker until SIGTERM."""
    queue = Queue.from_url(url, name=queue_name)
    worker = Worker(
        queue,
        TEST_FUNCTIONS,
        lease_s=lease_s,
        timers={"schedule": 0.2, "stats": 1, "sweep": 0.2, "abort": 0.2},
        shutdown_grace_period_s=5,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(worker.stop()))
    print("ready", flush=True)
    await worker.start()


if __name__ == "__main__":
    lease = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    asyncio.run(main(sys.argv[1], sys.argv[2], lease))
