"""Payloads in and out of columns, and rows into the protocol's records.

A job payload that is JSON text goes into a ``jsonb`` column, so that operators can query it
(``payload->'kwargs'``); anything else (pickle, msgpack ...) goes into ``bytea`` unchanged.
A flag remembers whether the caller gave ``bytes`` or ``str``, and the same type comes back.
JSON comes back as PostgreSQL renders ``jsonb``: the same value, though not byte for byte
the same text (key order and spacing are normalised).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from conveyor.backends.base import JobRow, LogLine, Payload, RunRecord

#: JSON escapes that Python accepts and ``jsonb`` refuses: NUL, and unpaired surrogates.
_JSONB_REFUSES = re.compile(
    r"\\u0000|\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def jsonb_compatible(text: str) -> bool:
    """Whether PostgreSQL accepts ``text`` as ``jsonb`` (Python's ``json`` is laxer)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates in the str itself
            return False
    if "\\u" in text and _JSONB_REFUSES.search(text):
        return False
    try:
        json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return False
    return True


def split_payload(payload: Payload) -> tuple[str | None, bytes | None, bool]:
    """A payload as ``(json_text, raw_bytes, is_bytes)``; exactly one of the first two is set."""
    if isinstance(payload, str):
        if jsonb_compatible(payload):
            return payload, None, False
        return None, payload.encode("utf-8", "surrogatepass"), False
    raw = bytes(payload)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, raw, True
    if jsonb_compatible(text):
        return text, None, True
    return None, raw, True


def join_payload(text: str | None, raw: bytes | None, is_bytes: bool) -> Payload:
    """The payload stored by :func:`split_payload`, of the type the caller gave."""
    if text is not None:
        return text.encode("utf-8") if is_bytes else text
    data = bytes(raw or b"")
    return data if is_bytes else data.decode("utf-8", "surrogatepass")


def split_opaque(value: Payload) -> tuple[bytes, bool]:
    """An opaque value (run detail, log extra, worker info) as ``(bytes, is_text)``."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass"), True
    return bytes(value), False


def join_opaque(data: bytes | None, is_text: bool) -> Payload:
    """The value stored by :func:`split_opaque`."""
    raw = bytes(data or b"")
    return raw.decode("utf-8", "surrogatepass") if is_text else raw


def clean_text(value: str) -> str:
    """``value`` without NUL characters, which a PostgreSQL ``text`` cannot hold."""
    return value.replace("\x00", "\\x00") if "\x00" in value else value


def job_row(row: Sequence[Any]) -> JobRow:
    """A :class:`JobRow` from ``key, payload, payload_raw, payload_bytes, status, attempts,
    started_ms, touched_ms, worker_id, run_id`` and, from claim and recover, ``token``."""
    return JobRow(
        key=row[0],
        payload=join_payload(row[1], row[2], row[3]),
        status=row[4],
        attempts=row[5],
        started_ms=row[6],
        touched_ms=row[7],
        worker_id=row[8],
        run_id=None if row[9] is None else str(row[9]),
        token=str(row[10]) if len(row) > 10 and row[10] is not None else None,
    )


def run_record(row: Sequence[Any]) -> RunRecord:
    """A :class:`RunRecord` from ``id, key, function, attempt, worker_id, status,
    started_ms, finished_ms, error, detail, detail_text``."""
    return RunRecord(
        run_id=str(row[0]),
        key=row[1],
        function=row[2],
        attempt=row[3],
        worker_id=row[4],
        status=row[5],
        started_ms=row[6],
        finished_ms=row[7],
        error=row[8],
        detail=join_opaque(row[9], row[10]),
    )


def log_line(row: Sequence[Any]) -> LogLine:
    """A :class:`LogLine` from ``run_id, seq, ts, level, message, extra, extra_text``."""
    return LogLine(
        run_id=row[0],
        seq=row[1],
        ts=row[2],
        level=row[3],
        message=row[4],
        extra=join_opaque(row[5], row[6]),
    )


def token_number(token: str) -> int:
    """A fencing token as stored (bigint); 0, which no lease ever has, for a token this
    backend never issued (so that a write under it is refused, never applied unfenced)."""
    if not token.isdigit() or len(token) > 18:
        return 0
    return int(token)


def run_id_number(run_id: str | None) -> int | None:
    """A run id as stored (bigint), or None for an id this backend never issued."""
    if run_id is None or not run_id.isdigit() or len(run_id) > 18:
        return None
    return int(run_id)
