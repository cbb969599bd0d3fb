"""OpenTelemetry tracing: send and process spans linked through the job's meta."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from conveyor.backends.memory import MemoryBackend
from conveyor.errors import MissingDependencyError
from conveyor.job import Status
from conveyor.queue import Queue
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor.observability.tracing import OpenTelemetryTracing


class Traced:
    """A queue with tracing on its own provider (the global provider is never touched)."""

    def __init__(self, name: str) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.queue = Queue(
            MemoryBackend(name),
            name=name,
            instrumentation=[OpenTelemetryTracing(tracer_provider=self.provider)],
        )

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


async def test_process_span_is_a_child_of_the_send_span() -> None:
    traced = Traced("mail")
    queue = traced.queue
    await queue.connect()
    with traced.provider.get_tracer("app").start_as_current_span("POST /signup") as request:
        job = await queue.enqueue("echo", value="hi")
    assert job is not None
    assert set(job.meta["trace"]) >= {"traceparent"}
    async with running_worker(queue, TEST_FUNCTIONS):
        await job.refresh(until_complete=10)
        await wait_until(lambda: traced.spans("process mail"), message="the process span")
    [send] = traced.spans("send mail")
    [process] = traced.spans("process mail")
    trace_id = request.get_span_context().trace_id
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert send.context.trace_id == process.context.trace_id == trace_id
    attributes = dict(process.attributes or {})
    assert attributes["messaging.system"] == "conveyor"
    assert attributes["messaging.destination.name"] == "mail"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == job.key
    assert attributes["conveyor.job.function"] == "echo"
    assert attributes["conveyor.job.attempt"] == 1
    assert attributes["conveyor.run.status"] == "complete"
    assert process.status.status_code == StatusCode.UNSET
    assert dict(send.attributes or {})["messaging.operation.type"] == "send"
    await queue.disconnect()


async def test_failed_attempts_have_error_status_and_share_the_send_parent() -> None:
    traced = Traced("flaky")
    queue = traced.queue
    await queue.connect()
    job = await queue.enqueue("fail_until", succeed_on=3, retries=2)
    assert job is not None
    async with running_worker(queue, TEST_FUNCTIONS):
        await job.refresh(until_complete=10)
        await wait_until(lambda: len(traced.spans("process flaky")) == 2)
    assert job.status == Status.FAILED
    [send] = traced.spans("send flaky")
    assert send.parent is None  # enqueued outside any span: a new trace
    processes = sorted(traced.spans("process flaky"), key=_attempt)
    for attempt, span in enumerate(processes, start=1):
        attributes = dict(span.attributes or {})
        assert attributes["conveyor.job.attempt"] == attempt
        assert span.parent is not None and span.parent.span_id == send.context.span_id
        assert span.context.trace_id == send.context.trace_id
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description is not None and "fails" in span.status.description
    assert [dict(s.attributes or {})["error.type"] for s in processes] == ["retried", "failed"]
    await queue.disconnect()


def _attempt(span: ReadableSpan) -> int:
    attempt = dict(span.attributes or {})["conveyor.job.attempt"]
    assert isinstance(attempt, int)
    return attempt


async def test_spans_started_by_the_task_nest_under_process() -> None:
    traced = Traced("nested")
    tracer = traced.provider.get_tracer("task")

    async def traced_task(ctx: dict[str, Any]) -> None:
        with tracer.start_as_current_span("inner work"):
            pass

    await traced.queue.connect()
    job = await traced.queue.enqueue("traced_task")
    assert job is not None
    async with running_worker(traced.queue, [traced_task]):
        await job.refresh(until_complete=10)
        await wait_until(lambda: traced.spans("process nested"))
    [inner] = traced.spans("inner work")
    [process] = traced.spans("process nested")
    assert inner.parent is not None and inner.parent.span_id == process.context.span_id
    await traced.queue.disconnect()


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    with pytest.raises(MissingDependencyError, match=r"conveyor\[otel\]"):
        OpenTelemetryTracing()
