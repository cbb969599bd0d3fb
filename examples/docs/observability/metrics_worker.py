"""Prometheus metrics of a worker process: ``conveyor metrics_worker.settings``."""

import os

import prometheus_client
from conveyor import Queue
from conveyor.observability.metrics import PrometheusMetrics
from conveyor.types import Context, SettingsDict


async def send_receipt(ctx: Context, *, order_id: int) -> None:
    pass


# --8<-- [start:worker]
# Counts and times what this process does: enqueued, started, finished, durations, waits.
metrics = PrometheusMetrics()
queue = Queue.from_url("sqlite:///shop.db", instrumentation=[metrics])


async def serve_metrics(ctx: Context) -> None:
    # In the startup hook, so that only worker processes serve (not producers importing
    # this module). One port per process: with --workers N, give each container one process.
    prometheus_client.start_http_server(
        int(os.environ.get("METRICS_PORT", "9100")), registry=metrics.registry
    )


settings: SettingsDict = {
    "queue": queue,
    "functions": [send_receipt],
    "startup": serve_metrics,
}
# --8<-- [end:worker]
