"""Retries, timeouts and aborts: what happens when a task does not simply return."""

import asyncio

from conveyor import JobError, Queue, Worker
from conveyor.types import Context


# --8<-- [start:tasks]
async def charge_card(ctx: Context, *, order: int) -> str:
    attempt = ctx["job"].attempts  # 1 on the first attempt
    if attempt < 3:
        raise ConnectionError(f"the payment gateway timed out (attempt {attempt})")
    return f"order {order} charged on attempt {attempt}"


async def export_orders(ctx: Context, *, months: int) -> int:
    await asyncio.sleep(months)  # far longer than its timeout allows
    return months


async def rebuild_index(ctx: Context) -> None:
    await asyncio.sleep(3600)


# --8<-- [end:tasks]


async def main() -> None:
    queue = Queue.from_url("sqlite:///failures.db")
    worker = Worker(queue, [charge_card, export_orders, rebuild_index])
    running = asyncio.create_task(worker.start())
    try:
        await demonstrate(queue)
    finally:
        await worker.stop()
        await running


async def demonstrate(queue: Queue) -> None:
    # --8<-- [start:retries]
    # Up to 3 attempts, the first retry 0.1 s after a failure, then doubling (with jitter).
    result = await queue.apply(
        "charge_card", order=7, retries=3, retry_delay=0.1, retry_backoff=True
    )
    print("retries:", result)
    # --8<-- [end:retries]

    # --8<-- [start:timeout]
    # A job that runs longer than its timeout is cancelled; with no attempt left, it fails.
    slow = await queue.enqueue("export_orders", months=12, timeout=1, retries=1)
    assert slow is not None
    await slow.refresh(until_complete=10)
    print("timeout:", slow.status.value, "-", slow.error)

    # apply and map raise JobError when a job fails or is aborted.
    try:
        await queue.apply("charge_card", order=8, retries=1)
    except JobError as exc:
        print("JobError:", exc.job.error_summary)
    # --8<-- [end:timeout]

    # --8<-- [start:abort]
    # The timeout of apply (and map) bounds the wait, not the job, which runs on.
    try:
        await queue.apply("rebuild_index", timeout=0.5, key="rebuild")
    except TimeoutError:
        print("apply: gave up waiting after 0.5 s")

    # Abort it: a queued job never starts; a running one is cancelled by its worker.
    await queue.abort("rebuild", "not needed any more")
    rebuild = await queue.job("rebuild")
    assert rebuild is not None
    await rebuild.refresh(until_complete=10)
    print("abort:", rebuild.status.value, "-", rebuild.error)
    # --8<-- [end:abort]


if __name__ == "__main__":
    asyncio.run(main())
