"""Pure helpers of the admin service: times, levels, worker records, throughput arithmetic."""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from conveyor.admin.models import FunctionStats, ThroughputBucket, WorkerInfo, json_friendly
from conveyor.backends.base import RunRecord
from conveyor.errors import AdminError

#: The statuses a run can have.
RUN_STATUSES = ("running", "complete", "failed", "aborted", "retried")

_LEVELS = logging.getLevelNamesMapping()


def epoch(value: float | datetime, what: str) -> float:
    """Epoch seconds from a number or an aware datetime.

    Raises:
        AdminError: For a naive datetime (its zone would be a guess).
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise AdminError(
                f"{what}: naive datetime {value.isoformat()}; give epoch seconds or a datetime "
                "with a time zone"
            )
        return value.timestamp()
    return float(value)


def epoch_ms(value: float | datetime | None, what: str) -> int | None:
    """Epoch milliseconds, or None."""
    return None if value is None else int(epoch(value, what) * 1000)


def level_number(level: int | str | None) -> int:
    """A logging level from a number or a name (``"warning"``, ``"WARN"`` ...); 0 for None.

    Raises:
        AdminError: For an unknown name.
    """
    if level is None:
        return 0
    if isinstance(level, int):
        return level
    text = level.strip().upper()
    if text.isdigit():
        return int(text)
    if text not in _LEVELS:
        names = ", ".join(sorted(set(_LEVELS) - {"NOTSET", "WARN", "FATAL"}))
        raise AdminError(f"unknown log level {level!r}; use one of {names}")
    return _LEVELS[text]


def line_level(name: str) -> int:
    """The number of a stored line's level name (0 for a name logging does not know)."""
    return _LEVELS.get(name.upper(), 0)


def check_run_status(status: str | None) -> None:
    """Raises AdminError for a status no run can have."""
    if status is not None and status not in RUN_STATUSES:
        raise AdminError(f"unknown run status {status!r}; use one of {', '.join(RUN_STATUSES)}")


def worker_info(worker_id: str, record: Any, queue: str) -> WorkerInfo:
    """A worker's published record as a :class:`WorkerInfo` (``running`` left empty)."""
    data: Mapping[str, Any] = record if isinstance(record, Mapping) else {}

    def number(name: str) -> float | None:
        value = data.get(name)
        return float(value) if isinstance(value, int | float) else None

    stats = data.get("stats")
    metadata = data.get("metadata")
    hung = data.get("hung")
    return WorkerInfo(
        id=str(data.get("id") or worker_id),
        queue=str(data.get("queue") or queue),
        concurrency=int(data.get("concurrency") or 0),
        started=number("started"),
        updated=number("updated"),
        running=[],
        stats={str(k): int(v) for k, v in stats.items()} if isinstance(stats, Mapping) else {},
        functions=[str(f) for f in data.get("functions") or ()],
        metadata=json_friendly(dict(metadata)) if isinstance(metadata, Mapping) else {},
        hung=len(hung) if isinstance(hung, list) else 0,
    )


def running_keys(record: Any) -> list[str]:
    """The job keys a worker record says it runs."""
    running = record.get("running") if isinstance(record, Mapping) else None
    return [str(key) for key in running or ()]


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending, non-empty list."""
    rank = max(math.ceil(fraction * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def bucketize(
    runs: Iterable[RunRecord], since: float, until: float, bucket_s: float
) -> tuple[list[ThroughputBucket], list[FunctionStats]]:
    """Per-bucket counts by status and per-function counts and durations.

    Args:
        runs: Runs that started within ``[since, until)``.
        since: The window's start (epoch seconds).
        until: Its end.
        bucket_s: The bucket width in seconds.

    Returns:
        Every bucket (empty ones included) and the per-function statistics, by name.
    """
    count = max(math.ceil((until - since) / bucket_s), 1)
    buckets = [ThroughputBucket(start=since + i * bucket_s, counts={}) for i in range(count)]
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        started = run.started_ms / 1000
        index = min(int((started - since) // bucket_s), count - 1)
        if index >= 0:
            counts = buckets[index].counts
            counts[run.status] = counts.get(run.status, 0) + 1
        statuses[run.function][run.status] += 1
        if run.finished_ms and run.status != "running":
            durations[run.function].append(max(run.finished_ms - run.started_ms, 0) / 1000)
    functions = []
    for name in sorted(statuses):
        values = sorted(durations.get(name, []))
        functions.append(
            FunctionStats(
                function=name,
                runs=sum(statuses[name].values()),
                counts=dict(statuses[name]),
                mean_s=sum(values) / len(values) if values else None,
                p95_s=percentile(values, 0.95) if values else None,
            )
        )
    return buckets, functions


__all__ = [
    "RUN_STATUSES",
    "bucketize",
    "check_run_status",
    "epoch",
    "epoch_ms",
    "level_number",
    "line_level",
    "percentile",
    "running_keys",
    "worker_info",
]
