"""Turning script replies into protocol records, and log lines into sorted-set members.

Scripts return flat lists of strings and integers, never nil or false, so that replies look
the same under RESP2 and RESP3 (where a Lua ``false`` becomes a boolean) and in every
redis-py version from 5 on. Empty strings stand for missing values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.backends.base import JobRow, LogLine, Payload, RunRecord

#: Values per job in the replies of ``get`` (after the key in ``list_jobs``).
JOB_FIELDS = 7
#: Values per job in the reply of ``recover``.
RECOVER_FIELDS = 8
#: Values per run in the reply of ``list_runs``.
RUN_FIELDS = 10
_SEP = b"\x1f"


def text(value: Any) -> str:
    """A reply value as str."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def optional(value: Any) -> str | None:
    """A reply value as str, or None when empty."""
    if not value:
        return None
    return text(value)


def number(value: Any) -> int:
    """A reply value as int (0 when empty)."""
    return int(value) if value else 0


def job_row(key: str, values: Sequence[Any]) -> JobRow:
    """A row from ``status, payload, attempts, started_ms, touched_ms, worker_id, run_id``."""
    status, payload, attempts, started, touched, worker_id, run_id = values
    return JobRow(
        key=key,
        payload=payload,
        status=text(status),
        attempts=number(attempts),
        started_ms=number(started),
        touched_ms=number(touched),
        worker_id=optional(worker_id),
        run_id=optional(run_id),
    )


def job_rows_with_keys(reply: Sequence[Any]) -> list[JobRow]:
    """Rows from a flat ``key, <JOB_FIELDS values>`` reply."""
    step = JOB_FIELDS + 1
    return [job_row(text(reply[i]), reply[i + 1 : i + step]) for i in range(0, len(reply), step)]


def recovered_rows(reply: Sequence[Any], worker_id: str) -> list[JobRow]:
    """Rows from ``recover``: ``key, status, payload, attempts, started, touched, run_id,
    token`` (the new fencing token)."""
    rows = []
    for i in range(0, len(reply), RECOVER_FIELDS):
        fields = reply[i : i + RECOVER_FIELDS]
        key, status, payload, attempts, started, touched, run_id, token = fields
        rows.append(
            JobRow(
                key=text(key),
                payload=payload,
                status=text(status),
                attempts=number(attempts),
                started_ms=number(started),
                touched_ms=number(touched),
                worker_id=worker_id,
                run_id=optional(run_id),
                token=text(token),
            )
        )
    return rows


def run_record(run_id: str, values: Sequence[Any]) -> RunRecord | None:
    """A run from ``key, function, attempt, worker_id, status, started, finished, error,
    detail``; None when the run does not exist."""
    key, function, attempt, worker_id, status, started, finished, error, detail = values
    if not key:
        return None
    return RunRecord(
        run_id=run_id,
        key=text(key),
        function=text(function),
        attempt=number(attempt),
        worker_id=optional(worker_id),
        status=text(status),
        started_ms=number(started),
        finished_ms=number(finished),
        error=optional(error),
        detail=detail or b"",
    )


def run_records(reply: Sequence[Any]) -> list[RunRecord]:
    """Runs from a flat ``run_id, <9 values>`` reply."""
    out = []
    for i in range(0, len(reply), RUN_FIELDS):
        record = run_record(text(reply[i]), reply[i + 1 : i + RUN_FIELDS])
        if record is not None:
            out.append(record)
    return out


def log_argument(
    run_id: str, seq: int, ts: float, level: str, message: str, extra: Payload
) -> bytes:
    """A log line as one ``append_logs`` argument: ``run_id US`` then its sorted-set member
    (unique per run thanks to the seq), so a line costs the script call one argument.

    Member layout: ``seq US ts US level US len(message) US message extra``, where US is
    0x1F; the script splits off the run id and scores the member by its seq.
    """
    data = message.encode()
    return b"%s\x1f%d\x1f%r\x1f%s\x1f%d\x1f%b%b" % (
        run_id.encode(),
        seq,
        ts,
        level.encode(),
        len(data),
        data,
        extra.encode() if isinstance(extra, str) else extra,
    )


def unpack_log(run_id: str, member: bytes) -> LogLine:
    """A line from its stored member (see :func:`log_argument`)."""
    seq, ts, level, size, rest = member.split(_SEP, 4)
    n = int(size)
    return LogLine(
        run_id=run_id,
        seq=int(seq),
        ts=float(ts),
        level=level.decode(),
        message=rest[:n].decode(),
        extra=rest[n:],
    )
