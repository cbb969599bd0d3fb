"""Prometheus metrics: per-process counters and histograms, queue gauges at scrape time."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from conveyor.admin import Admin
from conveyor.backends.memory import MemoryBackend
from conveyor.errors import MissingDependencyError
from conveyor.queue import Queue
from conveyor.testing.fixtures import running_worker
from conveyor.testing.helpers import wait_until
from conveyor.testing.tasks import TEST_FUNCTIONS

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conveyor.observability.metrics import MetricsExporter, PrometheusMetrics


def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(parsed: dict[Any, float], name: str, **labels: str) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


async def test_job_counters_and_histograms_after_runs() -> None:
    metrics = PrometheusMetrics()
    queue = Queue(MemoryBackend("jobs"), name="jobs", instrumentation=[metrics])
    await queue.connect()
    exporter = MetricsExporter(metrics.registry)
    async with running_worker(queue, TEST_FUNCTIONS):
        await queue.map("echo", [{"value": i} for i in range(3)], timeout=10)
        failed = await queue.enqueue("fail")
        flaky = await queue.enqueue("fail_until", succeed_on=2, retries=2)
        assert failed is not None and flaky is not None
        await failed.refresh(until_complete=10)
        await flaky.refresh(until_complete=10)
    parsed = samples(await exporter.render())
    echo = {"queue": "jobs", "function": "echo"}
    assert value(parsed, "conveyor_jobs_enqueued_total", **echo) == 3
    assert value(parsed, "conveyor_jobs_started_total", **echo) == 3
    assert value(parsed, "conveyor_jobs_finished_total", status="complete", **echo) == 3
    fail = {"queue": "jobs", "function": "fail"}
    assert value(parsed, "conveyor_jobs_finished_total", status="failed", **fail) == 1
    retried = {"queue": "jobs", "function": "fail_until"}
    assert value(parsed, "conveyor_jobs_started_total", **retried) == 2
    assert value(parsed, "conveyor_jobs_finished_total", status="retried", **retried) == 1
    assert value(parsed, "conveyor_jobs_finished_total", status="complete", **retried) == 1
    assert value(parsed, "conveyor_job_duration_seconds_count", **echo) == 3
    assert value(parsed, "conveyor_job_duration_seconds_count", **retried) == 2
    assert value(parsed, "conveyor_job_duration_seconds_sum", **echo) >= 0
    assert value(parsed, "conveyor_job_queue_wait_seconds_count", **echo) == 3
    # The second attempt of fail_until was due at once: its wait is not observed.
    assert value(parsed, "conveyor_job_queue_wait_seconds_count", **retried) == 1
    assert value(parsed, "conveyor_job_duration_seconds_bucket", le="+Inf", **echo) == 3
    # Nothing leaks into prometheus_client's global registry.
    import prometheus_client

    assert b"conveyor_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)
    await queue.disconnect()


async def test_queue_gauges_are_read_at_scrape_time() -> None:
    queue = Queue(MemoryBackend("gauges"), name="gauges")
    await queue.connect()
    exporter = MetricsExporter(admin=Admin(queue))
    parsed = samples(await exporter.render())
    jobs = {"queue": "gauges"}
    assert value(parsed, "conveyor_queue_jobs", status="queued", **jobs) == 0
    assert value(parsed, "conveyor_queue_state_up") == 1
    assert ("conveyor_workers", frozenset(jobs.items())) in parsed

    await queue.enqueue("echo", key="later", scheduled=time.time() + 3600)
    parsed = samples(await exporter.render())
    assert value(parsed, "conveyor_queue_jobs", status="scheduled", **jobs) == 1
    assert value(parsed, "conveyor_queue_jobs", status="queued", **jobs) == 0
    assert value(parsed, "conveyor_queue_latency_seconds", **jobs) == 0  # not due yet

    await queue.enqueue("echo", key="now")

    async def latency() -> float:
        parsed = samples(await exporter.render())
        return value(parsed, "conveyor_queue_latency_seconds", **jobs)

    assert await wait_until(lambda: _at_least(latency, 0.05), message="latency grows") >= 0.05
    parsed = samples(await exporter.render())
    assert value(parsed, "conveyor_queue_jobs", status="queued", **jobs) == 1

    async with running_worker(queue, TEST_FUNCTIONS, concurrency=4):
        running = await queue.enqueue("sleep", seconds=5)
        assert running is not None
        await wait_until(lambda: _scraped(exporter, "conveyor_worker_active_jobs", jobs, 1))
        parsed = samples(await exporter.render())
        assert value(parsed, "conveyor_workers", **jobs) == 1
        assert value(parsed, "conveyor_queue_jobs", status="active", **jobs) == 1
        assert value(parsed, "conveyor_queue_latency_seconds", **jobs) == 0
        await queue.abort(running, "done watching")
    parsed = samples(await exporter.render())
    assert value(parsed, "conveyor_workers", **jobs) == 0
    await queue.disconnect()


async def _at_least(read: Any, minimum: float) -> float | None:
    current = await read()
    return current if current >= minimum else None


async def _scraped(
    exporter: MetricsExporter, name: str, labels: dict[str, str], want: float
) -> bool:
    return value(samples(await exporter.render()), name, **labels) == want


async def test_a_failing_backend_reports_state_down_and_keeps_counters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = PrometheusMetrics()
    queue = Queue(MemoryBackend("down"), name="down", instrumentation=[metrics])
    await queue.connect()
    await queue.enqueue("echo")

    async def broken(*args: Any) -> Any:
        raise ConnectionError("backend unreachable")

    monkeypatch.setattr(queue.backend, "count", broken)
    exporter = MetricsExporter(metrics.registry, admin=Admin(queue))
    parsed = samples(await exporter.render())
    assert value(parsed, "conveyor_queue_state_up") == 0
    assert not any(name == "conveyor_queue_jobs" for name, _ in parsed)
    assert value(parsed, "conveyor_jobs_enqueued_total", queue="down", function="echo") == 1


async def test_asgi_app_serves_the_exposition() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    queue = Queue(MemoryBackend("asgi"), name="asgi", instrumentation=[metrics])
    await queue.connect()
    await queue.enqueue("echo")
    app = MetricsExporter(registry, admin=Admin(queue))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": "/metrics"}, receive, send)
    assert sent[0]["status"] == 200
    assert (b"content-type", app.content_type.encode()) in sent[0]["headers"]
    parsed = samples(sent[1]["body"])
    assert value(parsed, "conveyor_queue_jobs", queue="asgi", status="queued") == 1
    assert value(parsed, "conveyor_jobs_enqueued_total", queue="asgi", function="echo") == 1
    sent.clear()
    await app({"type": "http", "method": "POST", "path": "/metrics"}, receive, send)
    assert sent[0]["status"] == 405


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependencyError, match=r"conveyor\[prometheus\]"):
        PrometheusMetrics()
