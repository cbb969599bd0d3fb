"""A producer: run it while ``conveyor worker.settings`` is running."""

import asyncio
import time

from tasks import import_catalog, resize_image
from worker import queue


async def main() -> None:
    # --8<-- [start:enqueue]
    # Enqueue by name: the keyword arguments that are not job options go to the task.
    job = await queue.enqueue("send_welcome", email="ada@example.com")
    assert job is not None
    await job.refresh(until_complete=10)  # wait up to 10 s for it to finish
    print("enqueue:", job.status.value, "-", job.result)
    # --8<-- [end:enqueue]

    # --8<-- [start:apply]
    # apply: enqueue, wait, return the result (or raise JobError).
    print("apply:", await queue.apply("checksum", text="hello"))

    # map: one job per dict of arguments, run at once, results in order.
    sums = await queue.map("checksum", [{"text": "a"}, {"text": "b"}])
    print("map:", sums)
    # --8<-- [end:apply]

    # --8<-- [start:options]
    # Job options travel with the arguments: a start time, a key, a timeout ...
    later = await queue.enqueue(
        "send_welcome", email="grace@example.com", scheduled=time.time() + 1, timeout=20
    )
    # A key deduplicates: while a job with this key is incomplete (here: due in a
    # second, so certainly not finished yet), None comes back.
    first = await queue.enqueue(
        "export_orders", month="2025-01", key="export-2025-01", scheduled=time.time() + 1
    )
    again = await queue.enqueue("export_orders", month="2025-01", key="export-2025-01")
    print("deduplicated:", first is not None and again is None)
    assert later is not None
    await later.refresh(until_complete=10)
    print("scheduled:", later.result)
    # --8<-- [end:options]

    # --8<-- [start:typed]
    # A task handle checks its arguments: mypy flags resize_image.apply(queue, width="x").
    print("typed:", await resize_image.apply(queue, path="cat.jpg", width=200))
    await resize_image.options(key="resize-dog", priority=-1).enqueue(
        queue, path="dog.jpg", width=100
    )
    # --8<-- [end:typed]

    # --8<-- [start:progress]
    # Through its handle, the job gets the handle's options (a one-hour timeout ...).
    catalog = await import_catalog.enqueue(queue, pages=20)
    assert catalog is not None
    await catalog.refresh(until_complete=30)
    print("progress:", catalog.progress, "result:", catalog.result)
    # --8<-- [end:progress]

    await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
