"""Prometheus metrics (the ``prometheus`` extra: ``pip install "conveyor[prometheus]"``).

Two halves, so that N workers never publish N copies of one number:

* :class:`PrometheusMetrics` is an :class:`~conveyor.observability.instrumentation.Instrumentation`
  counting what *this process* does: jobs enqueued, started and finished, their duration
  and how long they waited in the queue. Each worker (and producer) has its own, summed
  by Prometheus across processes.
* :class:`QueueStateCollector` reads the state of the queues (jobs by status, the age of
  the oldest waiting job, live workers) through :class:`conveyor.admin.Admin` **at scrape
  time**; run it in one process (the console, or a dedicated exporter).

:class:`MetricsExporter` serves a registry: an ASGI app for ``/metrics`` and
:meth:`MetricsExporter.render` for the exposition text. Nothing is registered in
prometheus_client's global default registry; every object gets its own
:class:`prometheus_client.CollectorRegistry` unless one is passed in.

In a worker::

    metrics = PrometheusMetrics()
    queue = Queue.from_url(url, instrumentation=[metrics])
    prometheus_client.start_http_server(9100, registry=metrics.registry)

In the console process::

    exporter = MetricsExporter(admin=Admin.from_settings(settings))
    app.mount("/metrics", exporter)

prometheus_client is imported when one of these is built, not when this module is (its
import takes about 150 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from conveyor.errors import MissingDependencyError
from conveyor.job import Job, now_ms
from conveyor.observability.instrumentation import Instrumentation

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from conveyor.admin import Admin, QueueState

logger = logging.getLogger("conveyor.metrics")

#: Buckets of ``*_job_duration_seconds``: 5 ms to an hour.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600,
)  # fmt: skip
#: Buckets of ``*_job_queue_wait_seconds``: 5 ms to an hour.
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
#: Seconds a scrape waits for the queue state before answering without it.
REFRESH_TIMEOUT_S = 10.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def prometheus_client() -> ModuleType:
    """The prometheus_client module.

    Raises:
        MissingDependencyError: When it is not installed, saying which extra installs it.
    """
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        raise MissingDependencyError(
            "prometheus-client", "prometheus", "Prometheus metrics"
        ) from None


def _labels(job: Job) -> tuple[str, str]:
    return job.queue_name or "", job.function


class PrometheusMetrics(Instrumentation):
    """Counts and times this process's jobs; give it to ``Queue(instrumentation=[...])``.

    Metrics (labels ``queue`` and ``function``; ``status`` is ``complete``, ``failed``,
    ``aborted`` or ``retried``):

    * ``conveyor_jobs_enqueued_total``, ``conveyor_cron_enqueued_total`` (cron slots)
    * ``conveyor_jobs_started_total`` (attempts)
    * ``conveyor_jobs_finished_total{status}``
    * ``conveyor_job_duration_seconds`` (histogram, per attempt)
    * ``conveyor_job_queue_wait_seconds`` (histogram: from enqueued, or due, to started;
      observed for first attempts and for retries with a delay, since the time a retry
      due at once was re-queued is not recorded)

    Args:
        registry: Where to register; a new registry by default (never the global one).
        prefix: The metric name prefix.
        duration_buckets: Histogram buckets of the duration, in seconds.
        wait_buckets: Histogram buckets of the queue wait, in seconds.

    Raises:
        MissingDependencyError: Without prometheus_client.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        prefix: str = "conveyor",
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        wait_buckets: Sequence[float] = WAIT_BUCKETS,
    ) -> None:
        pc = prometheus_client()
        self.registry: CollectorRegistry = (
            registry if registry is not None else pc.CollectorRegistry()
        )
        labels = ("queue", "function")
        options: dict[str, Any] = {"registry": self.registry}
        self.jobs_enqueued = pc.Counter(
            f"{prefix}_jobs_enqueued", "Jobs stored in a queue by this process.", labels, **options
        )
        self.cron_enqueued = pc.Counter(
            f"{prefix}_cron_enqueued", "Cron slots enqueued by this process.", labels, **options
        )
        self.jobs_started = pc.Counter(
            f"{prefix}_jobs_started", "Attempts started by this process.", labels, **options
        )
        self.jobs_finished = pc.Counter(
            f"{prefix}_jobs_finished",
            "Attempts ended by this process, by outcome.",
            (*labels, "status"),
            **options,
        )
        self.job_duration = pc.Histogram(
            f"{prefix}_job_duration_seconds",
            "How long an attempt ran.",
            labels,
            buckets=tuple(duration_buckets),
            **options,
        )
        self.job_queue_wait = pc.Histogram(
            f"{prefix}_job_queue_wait_seconds",
            "How long a job waited between being due and starting.",
            labels,
            buckets=tuple(wait_buckets),
            **options,
        )

    def enqueued(self, job: Job) -> None:
        """Count a stored job (and a cron slot)."""
        labels = _labels(job)
        self.jobs_enqueued.labels(*labels).inc()
        if job.meta and job.meta.get("trigger") == "cron":
            self.cron_enqueued.labels(*labels).inc()

    @contextlib.contextmanager
    def run(self, job: Job) -> Iterator[None]:
        """Count an attempt's start and observe how long the job waited."""
        labels = _labels(job)
        self.jobs_started.labels(*labels).inc()
        wait = _queue_wait_s(job)
        if wait is not None:
            self.job_queue_wait.labels(*labels).observe(wait)
        yield

    def finished(self, job: Job, run_status: str) -> None:
        """Count an attempt's outcome and observe its duration."""
        labels = _labels(job)
        self.jobs_finished.labels(*labels, run_status).inc()
        if job.started:
            self.job_duration.labels(*labels).observe(max(now_ms() - job.started, 0) / 1000)


def _queue_wait_s(job: Job) -> float | None:
    if not job.started:
        return None
    scheduled_ms = int(float(job.scheduled or 0) * 1000)
    if job.attempts > 1 and not scheduled_ms:
        return None
    ready = max(job.queued, scheduled_ms)
    return max(job.started - ready, 0) / 1000 if ready else None


class QueueStateCollector:
    """Queue gauges computed through :class:`~conveyor.admin.Admin` at scrape time.

    Metrics (label ``queue``):

    * ``conveyor_queue_jobs{status}``: ``queued`` (due), ``active``, ``scheduled``
    * ``conveyor_queue_latency_seconds``: age of the oldest due job (a lower bound on very
      long queues; see :data:`conveyor.admin.queries.LATENCY_SCAN`)
    * ``conveyor_workers``: live workers; ``conveyor_worker_active_jobs``: jobs they run
    * ``conveyor_queue_state_up``: 1 when the last refresh succeeded (else the gauges
      above are left out rather than reported stale)

    prometheus_client collects synchronously, so :meth:`refresh` (async) must run before
    each collection: :class:`MetricsExporter` does it on every scrape.

    Args:
        admin: The admin service whose queues are reported.
        prefix: The metric name prefix.
    """

    def __init__(self, admin: Admin, *, prefix: str = "conveyor") -> None:
        prometheus_client()
        self._gauge = importlib.import_module("prometheus_client.metrics_core").GaugeMetricFamily
        self.admin = admin
        self.prefix = prefix
        self._states: list[QueueState] = []
        self._up = False

    async def refresh(self, timeout: float = REFRESH_TIMEOUT_S) -> bool:
        """Read the queues' state now.

        Returns:
            Whether it succeeded; on failure (logged) the queue gauges are left out.
        """
        try:
            self._states = await asyncio.wait_for(self.admin.queue_states(), timeout)
            self._up = True
        except Exception:
            logger.exception("reading the queue state for metrics failed")
            self._states, self._up = [], False
        return self._up

    def _families(self) -> dict[str, Any]:
        gauge = self._gauge
        p = self.prefix
        return {
            "jobs": gauge(f"{p}_queue_jobs", "Jobs in the queue now, by status.",
                          labels=("queue", "status")),
            "latency": gauge(f"{p}_queue_latency_seconds",
                             "Age of the oldest job that is due and waiting.", labels=("queue",)),
            "workers": gauge(f"{p}_workers", "Live workers.", labels=("queue",)),
            "active": gauge(f"{p}_worker_active_jobs", "Jobs the live workers run.",
                            labels=("queue",)),
            "up": gauge(f"{p}_queue_state_up",
                        "Whether the queue state could be read at this scrape."),
        }  # fmt: skip

    def describe(self) -> list[Metric]:
        """The metric families, without samples (for name-clash checks at registration)."""
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        """The families with the samples of the last :meth:`refresh`."""
        families = self._families()
        for state in self._states:
            for status, value in (
                ("queued", state.queued),
                ("active", state.active),
                ("scheduled", state.scheduled),
            ):
                families["jobs"].add_metric([state.name, status], value)
            families["latency"].add_metric([state.name], state.latency_s)
            families["workers"].add_metric([state.name], len(state.workers))
            busy = sum(len(worker.running) for worker in state.workers)
            families["active"].add_metric([state.name], busy)
        families["up"].add_metric([], 1 if self._up else 0)
        yield from families.values()


class MetricsExporter:
    """Serves a registry in the Prometheus text format: an ASGI app and :meth:`render`.

    Args:
        registry: The registry to serve (a :class:`PrometheusMetrics`'s, say); a new one
            by default.
        admin: When given, a :class:`QueueStateCollector` on it is registered and
            refreshed at every scrape.
        prefix: The metric name prefix of that collector.

    Raises:
        MissingDependencyError: Without prometheus_client.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        admin: Admin | None = None,
        prefix: str = "conveyor",
    ) -> None:
        pc = prometheus_client()
        self._pc = pc
        self.registry: CollectorRegistry = (
            registry if registry is not None else pc.CollectorRegistry()
        )
        self.content_type: str = pc.CONTENT_TYPE_LATEST
        self.collector: QueueStateCollector | None = None
        if admin is not None:
            self.collector = QueueStateCollector(admin, prefix=prefix)
            # prometheus-client before 0.24 types register() with its Collector ABC.
            self.registry.register(self.collector)  # type: ignore[arg-type,unused-ignore]

    async def render(self) -> bytes:
        """Refresh the queue state (when there is a collector) and return the exposition."""
        if self.collector is not None:
            await self.collector.refresh()
        text: bytes = self._pc.generate_latest(self.registry)
        return text

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app: ``GET`` (or ``HEAD``) answers the exposition at any path."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain", [(b"allow", b"GET")])
            return
        body = await self.render()
        if scope.get("method") == "HEAD":
            body = b""
        await _respond(send, 200, body, self.content_type)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "DURATION_BUCKETS",
    "WAIT_BUCKETS",
    "MetricsExporter",
    "PrometheusMetrics",
    "QueueStateCollector",
    "prometheus_client",
]
