"""OpenTelemetry tracing (the ``otel`` extra: ``pip install "conveyor[otel]"``).

:class:`OpenTelemetryTracing` is an
:class:`~conveyor.observability.instrumentation.Instrumentation` that follows the messaging
semantic conventions:

* a PRODUCER span ``send <queue>`` around each enqueue, child of whatever span is current
  (the web request that enqueued, say). Its W3C trace context (``traceparent`` and
  ``tracestate``) is stored in ``job.meta["trace"]``, so it travels with the job to any
  worker process;
* a CONSUMER span ``process <queue>`` around each attempt, child of the ``send`` span,
  current while the task runs (so spans the task starts nest under it), with error status
  when the attempt does not complete.

Attributes: ``messaging.system=conveyor``, ``messaging.destination.name`` (the queue),
``messaging.operation.name`` / ``.type`` (``send`` / ``process``),
``messaging.message.id`` (the job key), ``conveyor.job.function``,
``conveyor.job.attempt``, ``conveyor.run.id`` and ``conveyor.run.status``; on failure
``error.type`` is the run status (``failed``, ``aborted`` or ``retried``) and the span
status description the job's error.

Only opentelemetry-api is needed: without an SDK configured the spans are no-ops. It is
imported when :class:`OpenTelemetryTracing` is built, not when this module is.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from conveyor.errors import MissingDependencyError
from conveyor.job import Job
from conveyor.observability.instrumentation import Instrumentation

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

#: The meta key holding the W3C trace context of the ``send`` span.
META_KEY = "trace"
#: Longest error description put on a span.
_MAX_DESCRIPTION = 1000


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingDependencyError("opentelemetry-api", "otel", "OpenTelemetry tracing") from None


def _version() -> str | None:
    try:
        return importlib.metadata.version("conveyor")
    except importlib.metadata.PackageNotFoundError:
        return None


class OpenTelemetryTracing(Instrumentation):
    """``send`` and ``process`` spans linked through the job; give it to
    ``Queue(instrumentation=[...])`` in producers and workers alike.

    Args:
        tracer_provider: The provider to use; the globally configured one by default.

    Raises:
        MissingDependencyError: Without opentelemetry-api.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._trace = _import("opentelemetry.trace")
        self._context = _import("opentelemetry.context")
        propagation = _import("opentelemetry.trace.propagation.tracecontext")
        self._propagator = propagation.TraceContextTextMapPropagator()
        self._tracer = self._trace.get_tracer(
            "conveyor", _version(), tracer_provider=tracer_provider
        )
        # Spans between two hooks of one job; weak, so a job that is never stored (its
        # key was taken) does not keep its span alive for ever.
        self._sending: weakref.WeakKeyDictionary[Job, Span] = weakref.WeakKeyDictionary()
        self._processing: weakref.WeakKeyDictionary[Job, Span] = weakref.WeakKeyDictionary()

    def _attributes(self, job: Job, operation: str) -> dict[str, Any]:
        return {
            "messaging.system": "conveyor",
            "messaging.destination.name": job.queue_name or "",
            "messaging.operation.name": operation,
            "messaging.operation.type": operation,
            "messaging.message.id": job.key,
            "conveyor.job.function": job.function,
        }

    def before_enqueue(self, job: Job) -> None:
        """Start the ``send`` span and put its trace context in ``job.meta``."""
        previous = self._sending.pop(job, None)
        if previous is not None:  # the same job object enqueued again before it was stored
            previous.end()
        span = self._tracer.start_span(
            f"send {job.queue_name}",
            kind=self._trace.SpanKind.PRODUCER,
            attributes=self._attributes(job, "send"),
        )
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        job.meta = {**(job.meta or {}), META_KEY: carrier}
        self._sending[job] = span

    def enqueued(self, job: Job) -> None:
        """End the ``send`` span once the job is stored."""
        span = self._sending.pop(job, None)
        if span is not None:
            span.end()

    @contextlib.contextmanager
    def run(self, job: Job) -> Iterator[None]:
        """Start the ``process`` span, child of the ``send`` span, current while it runs.

        The span ends in :meth:`finished`, which knows the outcome; if the attempt is torn
        down before that, here.
        """
        carrier = job.meta.get(META_KEY) if job.meta else None
        parent = self._propagator.extract(
            carrier if isinstance(carrier, dict) else {}, context=self._context.Context()
        )
        attributes = self._attributes(job, "process")
        attributes["conveyor.job.attempt"] = job.attempts
        run_id = job.meta.get("run_id") if job.meta else None
        if run_id is not None:
            attributes["conveyor.run.id"] = str(run_id)
        span = self._tracer.start_span(
            f"process {job.queue_name}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes=attributes,
        )
        self._processing[job] = span
        try:
            with self._trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                yield
        except BaseException as exc:
            if self._processing.pop(job, None) is not None:
                span.record_exception(exc)
                self._fail(span, type(exc).__name__, repr(exc))
                span.end()
            raise

    def finished(self, job: Job, run_status: str) -> None:
        """End the ``process`` span with the attempt's outcome."""
        span = self._processing.pop(job, None)
        if span is None:
            return
        span.set_attribute("conveyor.run.status", run_status)
        if run_status != "complete":
            self._fail(span, run_status, job.error_summary or run_status)
        span.end()

    def _fail(self, span: Span, error_type: str, description: str) -> None:
        span.set_attribute("error.type", error_type)
        status = self._trace.Status(self._trace.StatusCode.ERROR, description[:_MAX_DESCRIPTION])
        span.set_status(status)


__all__ = ["META_KEY", "OpenTelemetryTracing"]
