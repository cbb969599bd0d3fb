"""Turning jobs into stored payloads and back.

The default is the standard library's ``json``; ``Queue(dump=..., load=...)`` takes any pair
(``orjson.dumps`` / ``orjson.loads`` with the ``orjson`` extra). A failure names the argument
that could not be serialized.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from conveyor.errors import SerializationError

Dumper = Callable[[Any], bytes | str]
Loader = Callable[[bytes | str], Any]


#: A compact encoder, built once: ``json.dumps`` with non-default separators would build a
#: new encoder on every call, and every job is serialized several times. It holds no state
#: between calls.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def default_dump(value: Any) -> str:
    """``json.dumps`` without extra spaces."""
    return _COMPACT.encode(value)


def default_load(value: bytes | str) -> Any:
    """``json.loads``."""
    return json.loads(value)


def dump_job(dump: Dumper, data: dict[str, Any]) -> bytes | str:
    """Serialize a job dict, naming the offending argument on failure.

    Args:
        dump: The serializer.
        data: The job's :meth:`conveyor.job.Job.to_dict`.

    Returns:
        The payload.

    Raises:
        SerializationError: Naming the kwarg (or field) that could not be serialized.
    """
    try:
        return dump(data)
    except Exception as exc:
        function = str(data.get("function"))
        kwargs = data.get("kwargs") or {}
        for name, value in kwargs.items():
            try:
                dump(value)
            except Exception as inner:
                raise SerializationError(function, name, _reason(inner, value)) from exc
        for name, value in data.items():
            if name == "kwargs":
                continue
            try:
                dump(value)
            except Exception as inner:
                raise SerializationError(function, name, _reason(inner, value)) from exc
        raise SerializationError(function, None, str(exc)) from exc


def storable_text(text: str) -> str:
    """``text`` as every backend can store it: valid UTF-8 without NUL characters.

    A lone surrogate (a file name that was not UTF-8, decoded with ``surrogateescape``) or a
    NUL character cannot be stored as text by SQLite, Redis clients or PostgreSQL; each is
    written as its escape (``\\udcff``, ``\\x00``) instead, so the line is kept readable.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def dump_value(dump: Dumper, function: str, what: str, value: Any) -> bytes | str:
    """Serialize one value (a result, run details), naming ``what`` on failure."""
    try:
        return dump(value)
    except Exception as exc:
        raise SerializationError(function, what, _reason(exc, value)) from exc


def _reason(exc: Exception, value: Any) -> str:
    return f"{type(value).__name__} value is not serializable ({exc})"
