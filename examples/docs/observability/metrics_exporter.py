"""The state of the queues as Prometheus gauges, read at scrape time in one process."""

import asyncio

from conveyor import Queue
from conveyor.admin import Admin
from conveyor.observability.metrics import MetricsExporter
from starlette.applications import Starlette
from starlette.routing import Mount

queue = Queue.from_url("sqlite:///exporter.db")

# --8<-- [start:exporter]
# Jobs by status, the age of the oldest waiting job, live workers: computed through the
# admin service when Prometheus scrapes, so N workers never report N copies of one number.
admin = Admin(queue)
exporter = MetricsExporter(admin=admin)

# An ASGI app: serve it alone, or mount it in the application that serves the console.
app = Starlette(routes=[Mount("/metrics", app=exporter)])
# --8<-- [end:exporter]


async def main() -> None:
    await queue.enqueue("send_receipt", order_id=1)
    await queue.enqueue("send_receipt", order_id=2)
    text = (await exporter.render()).decode()
    for line in text.splitlines():
        if line.startswith(("conveyor_queue_jobs", "conveyor_workers")):
            print(line)
    await admin.disconnect()
    await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
