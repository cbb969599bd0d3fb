"""Batches as column arrays: a whole batch is one statement over ``unnest(...)``.

(Jobs to enqueue have their own encodings, in :mod:`~conveyor.backends.postgres.enqueue`.)

Each function turns a list of protocol records into the parameters of one named query,
one Python list (one PostgreSQL array) per column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.backends.base import LogLine, LogRow, RunEnd, RunRecord, Transition
from conveyor.backends.postgres.codec import (
    clean_text,
    run_id_number,
    split_opaque,
    split_payload,
    token_number,
)

_FINISH_COLUMNS = (
    "keys",
    "payloads",
    "raws",
    "is_bytes",
    "statuses",
    "dues",
    "expire_ats",
    "removes",
    "run_ids",
    "run_statuses",
    "finished_ms",
    "details",
    "details_text",
    "errors",
    "tokens",
)


def _finish_row(t: Transition) -> tuple[Any, ...]:
    text, raw, was_bytes = split_payload(t.payload)
    run = t.run
    detail, detail_text = split_opaque(run.detail) if run else (b"", False)
    return (
        t.key,
        text,
        raw,
        was_bytes,
        t.status,
        float(t.due or 0.0),
        None if t.expire_at is None else float(t.expire_at),
        bool(t.delete),
        run_id_number(run.run_id) if run else None,
        run.status if run else None,
        int(run.finished_ms) if run else None,
        detail,
        detail_text,
        clean_text(run.error) if run and run.error else None,
        None if t.token is None else token_number(t.token),
    )


def finish_params(transitions: Sequence[Transition]) -> dict[str, Any]:
    """Parameters of the ``finish`` query (but ``now``, the time of re-queues)."""
    columns = list(zip(*(_finish_row(t) for t in transitions), strict=True))
    if not columns:
        columns = [() for _ in _FINISH_COLUMNS]
    return {name: list(values) for name, values in zip(_FINISH_COLUMNS, columns, strict=True)}


def log_params(rows: Sequence[LogRow]) -> dict[str, Any]:
    """Parameters of the ``append_logs`` query (the lines of ``finish_with_logs`` too).

    Args:
        rows: Lines as rows in :class:`~conveyor.backends.base.LogLine`'s field order.
    """
    extras: list[bytes] = []
    extras_text: list[bool] = []
    for row in rows:
        extra, is_text = split_opaque(row[5])
        extras.append(extra)
        extras_text.append(is_text)
    return {
        "log_run_ids": [row[0] for row in rows],
        "seqs": [int(row[1]) for row in rows],
        "ts": [float(row[2]) for row in rows],
        "levels": [row[3] for row in rows],
        "messages": [clean_text(row[4]) for row in rows],
        "extras": extras,
        "extras_text": extras_text,
    }


def line_rows(lines: Sequence[LogLine]) -> list[LogRow]:
    """:class:`~conveyor.backends.base.LogLine` objects as rows, for :func:`log_params`."""
    return [(ln.run_id, ln.seq, ln.ts, ln.level, ln.message, ln.extra) for ln in lines]


def record_params(starts: Sequence[RunRecord], ends: Sequence[RunEnd]) -> dict[str, Any]:
    """Parameters of the ``record_runs`` query."""
    s_details = [split_opaque(run.detail) for run in starts]
    e_details = [split_opaque(end.detail) for end in ends]
    return {
        "s_ids": [run.run_id for run in starts],
        "s_keys": [run.key for run in starts],
        "s_functions": [run.function for run in starts],
        "s_attempts": [int(run.attempt) for run in starts],
        "s_workers": [run.worker_id for run in starts],
        "s_statuses": [run.status for run in starts],
        "s_started": [int(run.started_ms) for run in starts],
        "s_finished": [int(run.finished_ms) for run in starts],
        "s_errors": [None if run.error is None else clean_text(run.error) for run in starts],
        "s_details": [detail for detail, _ in s_details],
        "s_details_text": [is_text for _, is_text in s_details],
        "e_ids": [end.run_id for end in ends],
        "e_statuses": [end.status for end in ends],
        "e_finished": [int(end.finished_ms) for end in ends],
        "e_errors": [None if end.error is None else clean_text(end.error) for end in ends],
        "e_details": [detail for detail, _ in e_details],
        "e_details_text": [is_text for _, is_text in e_details],
    }
