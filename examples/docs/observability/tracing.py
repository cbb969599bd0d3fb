"""OpenTelemetry tracing: one trace from the request that enqueues to the task that runs."""

import asyncio

from conveyor import Queue, Worker
from conveyor.observability.tracing import OpenTelemetryTracing
from conveyor.types import Context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# Your OpenTelemetry set-up; here the spans are kept in memory to print them.
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("shop")

# --8<-- [start:queue]
# The same instrumentation in producers and in workers: the trace context travels with
# the job (in job.meta["trace"]), so the worker's span continues the producer's trace.
queue = Queue.from_url("sqlite:///tracing.db", instrumentation=[OpenTelemetryTracing()])
# --8<-- [end:queue]


async def charge_card(ctx: Context, *, order: int) -> str:
    with tracer.start_as_current_span("call the payment gateway"):
        return f"order {order} charged"


async def main() -> None:
    worker = Worker(queue, [charge_card])
    running = asyncio.create_task(worker.start())
    try:
        with tracer.start_as_current_span("POST /orders"):
            await queue.apply("charge_card", order=7)
    finally:
        await worker.stop()
        await running

    spans = {span.name: span for span in exporter.get_finished_spans()}

    def parent_of(span: ReadableSpan) -> str:
        parent = span.parent.span_id if span.parent else None
        names = [s.name for s in spans.values() if s.context.span_id == parent]
        return names[0] if names else "-"

    for name in ("POST /orders", "send default", "process default", "call the payment gateway"):
        span = spans[name]
        print(f"{name} ({span.kind.name.lower()}), parent: {parent_of(span)}")
    print("one trace:", len({span.context.trace_id for span in spans.values()}) == 1)


if __name__ == "__main__":
    asyncio.run(main())
