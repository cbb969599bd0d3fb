"""A worker process for tests: ``python -m conveyor.testing.worker_process URL QUEUE [LEASE_S]``.

It runs the functions in :mod:`conveyor.testing.tasks` with short timers, so that tests can
kill it with SIGKILL and watch another worker recover its jobs. SIGTERM stops it gracefully.

It prints ``ready`` once it is connected to its queue, just before it claims its first job,
and exits on its own if the process that started it dies, so that a test that crashed
leaves no worker behind. ``--concurrency N`` sets how many jobs it runs at once.
:class:`conveyor.testing.faults.WorkerProcess` drives it from a test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from conveyor.queue import Queue
from conveyor.testing.tasks import TEST_FUNCTIONS
from conveyor.worker import Worker

#: Seconds between checks that the parent process is still alive.
PARENT_CHECK_S = 0.5


async def announce_ready(ctx: dict[str, Any]) -> None:
    """The worker's startup hook: tell the test that the worker is connected."""
    print("ready", flush=True)


async def exit_with_parent(parent_pid: int) -> None:
    """Exit at once when the parent process is gone (this process was re-parented)."""
    # Nothing signals a re-parenting that asyncio could wait on: poll.
    while os.getppid() == parent_pid:  # noqa: ASYNC110
        await asyncio.sleep(PARENT_CHECK_S)
    os._exit(1)


async def main(url: str, queue_name: str, lease_s: float, concurrency: int = 10) -> None:
    """Run the test worker until SIGTERM."""
    queue = Queue.from_url(url, name=queue_name)
    worker = Worker(
        queue,
        TEST_FUNCTIONS,
        concurrency=concurrency,
        lease_s=lease_s,
        timers={"schedule": 0.2, "stats": 1, "sweep": 0.2, "abort": 0.2},
        shutdown_grace_period_s=5,
        startup=announce_ready,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(worker.stop()))
    watchdog = asyncio.create_task(exit_with_parent(os.getppid()))
    try:
        await worker.start()
    finally:
        watchdog.cancel()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``URL QUEUE [LEASE_S] [--concurrency N]``."""
    parser = argparse.ArgumentParser(prog="python -m conveyor.testing.worker_process")
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("lease_s", nargs="?", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=10)
    return parser.parse_args(argv)


if __name__ == "__main__":
    # Warnings on stderr, where WorkerProcess.output() lets a test read them.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    asyncio.run(main(args.url, args.queue, args.lease_s, args.concurrency))
