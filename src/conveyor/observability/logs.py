"""Per-run log capture.

While a job runs, a :class:`contextvars.ContextVar` names its run. A logging handler that the
worker installs on the root logger attaches every record emitted in that context (the task,
its hooks, threads started with a copied context) to the run, whatever the logger. Lines
are buffered in memory and written in batches by the worker's writer: at the end of the run
and every few seconds while it goes on, so that a console can tail a running job.

A run keeps at most ``max_lines`` lines and ``max_bytes`` of messages: a line that would
exceed either is dropped, and one last line says how many were dropped.

The cost is split in two. When a record is emitted, the handler only formats its message
(its arguments may change later) and appends it to one buffer; the rest (the caps, sequence
numbers, extra fields, the rows themselves) is done by :meth:`LogSink.take`, in one pass
over every line buffered since the last write, on the event loop's thread. Lines leave as
plain tuples (:data:`LogRow`), which a backend can store as they are.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from conveyor.backends.base import LogRow, Payload
from conveyor.serialization import storable_text

#: Attributes every LogRecord has; anything else on a record is an ``extra`` field.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()) | {
    "message",
    "asctime",
    "taskName",
}

#: How many attributes a record made without ``extra`` has: a record of this size has no
#: extra field (logging only ever adds attributes to a record), which is cheap to check.
_PLAIN_SIZE = len(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)

#: The most call sites whose encoded extra fields a sink remembers before it starts over.
_EXTRAS_CACHED = 4096


#: A buffered record: its run; the record itself (encoded later), or its time, level and
#: extra fields taken at once (a record with a traceback or extra fields), or None (the end
#: of a run that dropped lines); the formatted message.
_Entry = tuple["RunLog", logging.LogRecord | tuple[float, str, Payload] | None, str]

#: Messages longer than this many characters count against the buffer's byte bound; the
#: bound on lines covers shorter ones.
_LONG = 1024


#: The run whose lines are being captured in this context (a task, or a thread started
#: with a copied context). Context-local, so it is not shared state between jobs.
current_run: contextvars.ContextVar[RunLog | None] = contextvars.ContextVar(
    "conveyor_current_run", default=None
)


def _size(message: str) -> int:
    """The size of a message in bytes, as stored (UTF-8)."""
    return len(message) if message.isascii() else len(message.encode("utf-8", "replace"))


def _quote(text: str | None) -> str:
    return "null" if text is None else encode_basestring_ascii(text)


class RunLog:
    """The capture state of one run: what it kept and what it dropped.

    ``lines`` and ``bytes`` are counted by :meth:`LogSink.take` only, ``ended`` is set by
    :meth:`LogSink.end_run` (both on the event loop's thread); the dropped counts change
    under the sink's lock.

    Args:
        run_id: The run's id.
        sink: The worker's :class:`LogSink` that receives the lines.
    """

    # Class-level defaults: a run that never logs costs two attributes.
    lines = 0
    bytes = 0
    dropped = 0
    dropped_bytes = 0
    ended = False

    def __init__(self, run_id: str, sink: LogSink) -> None:
        self.run_id = run_id
        self.sink = sink


class LogSink(logging.Handler):
    """The worker's handler: routes records of its own runs to one buffer for the writer.

    Args:
        dump: Serializes the extra fields of a line.
        level: The lowest level captured.
        max_lines: Per-run line cap.
        max_bytes: Per-run byte cap.
        plain_json: ``dump`` is the standard JSON serializer, so the usual extra fields
            may be written directly as JSON text.
        max_waiting: The most lines the buffer holds: while the writer is behind by more
            than this (a flood of lines between two writes), new lines are dropped and
            counted in their run's dropped line, so that memory stays bounded. By default
            50,000, or ``max_lines`` if more.
        max_waiting_bytes: The same bound for the characters of long messages (over 1,024
            characters); by default 16 times ``max_bytes``.
    """

    def __init__(
        self,
        dump: Callable[[Any], Payload],
        level: int = logging.INFO,
        max_lines: int = 10_000,
        max_bytes: int = 2_000_000,
        plain_json: bool = False,
        max_waiting: int | None = None,
        max_waiting_bytes: int | None = None,
    ) -> None:
        super().__init__(level)
        self.plain_json = plain_json
        self.current = current_run
        self._dump = dump
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.max_waiting = max_waiting or max(max_lines, 50_000)
        self.max_waiting_bytes = max_waiting_bytes or 16 * max_bytes
        # Appended to by any thread, emptied from the left by take(): both are atomic.
        self._pending: collections.deque[_Entry] = collections.deque()
        # Characters of long messages appended and taken: only emitting threads add to the
        # first, only take() to the second, without a lock: a lost update can only loosen
        # the bound.
        self._long_in = 0
        self._long_out = 0
        self._failed: list[LogRow] = []
        # Guards the dropped counts, which both emitting threads and take() change.
        self._guard = threading.Lock()
        # Encoded extra fields of records without extras, by call site.
        self._extras: dict[tuple[str, str, int, str], Payload] = {}
        self._root_level: int | None = None

    def install(self) -> None:
        """Attach to the root logger, lowering its level to ours if it is higher."""
        root = logging.getLogger()
        root.addHandler(self)
        if root.level > self.level or root.level == logging.NOTSET:
            self._root_level = root.level
            root.setLevel(self.level)

    def uninstall(self) -> None:
        """Detach from the root logger and restore its level."""
        root = logging.getLogger()
        root.removeHandler(self)
        if self._root_level is not None:
            root.setLevel(self._root_level)
            self._root_level = None

    def start_run(self, run_id: str) -> contextvars.Token[RunLog | None]:
        """Make ``run_id`` the current run of this context."""
        return self.current.set(RunLog(run_id, self))

    def end_run(self, token: contextvars.Token[RunLog | None]) -> None:
        """End the current run's capture; lines it dropped are reported after its last."""
        run = self.current.get()
        if run is not None and run.sink is self:
            run.ended = True
            if run.dropped:
                # After its lines still buffered; a drop found later by take() is reported
                # at the end of that pass, which holds all of them.
                self._pending.append((run, None, ""))
        self.current.reset(token)

    def handle(self, record: logging.LogRecord) -> bool:
        """Capture ``record`` without the base class's handler lock and filters.

        Records of other contexts return at once, so a worker's handler costs other code
        next to nothing.
        """
        run = self.current.get()
        if run is None or run.sink is not self:
            return False
        try:
            message = record.getMessage()
            source: logging.LogRecord | tuple[float, str, Payload] = record
            if record.exc_info or len(record.__dict__) != _PLAIN_SIZE:
                # A traceback, or extra fields: encoded now, as they are now.
                message, source = self._encode_now(record, message)
            if len(self._pending) >= self.max_waiting or (
                len(message) > _LONG and not self._admit_long(len(message))
            ):
                self._count_dropped(run, _size(message))
                return True
            self._pending.append((run, source, message))
        except Exception:
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Attach ``record`` to the current run, if it is one of ours."""
        self.handle(record)

    def _encode_now(
        self, record: logging.LogRecord, message: str
    ) -> tuple[str, tuple[float, str, Payload]]:
        if record.exc_info and record.exc_info[0] is not None:
            message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
        return message, (record.created, record.levelname, self.encode_extra(record))

    def _admit_long(self, length: int) -> bool:
        if self._long_in - self._long_out + length > self.max_waiting_bytes:
            return False
        self._long_in += length
        return True

    def _count_dropped(self, run: RunLog, size: int) -> None:
        with self._guard:
            run.dropped += 1
            run.dropped_bytes += size

    def take(self) -> list[LogRow]:
        """Every line buffered so far, removed from the buffer, each run's lines in order.

        Applies each run's caps, numbers its lines and encodes their extra fields, in one
        pass. Called from one thread at a time (the worker's writer), the event loop's.
        """
        rows, self._failed = self._failed, []
        pending = self._pending
        extras = self._extras
        max_lines, max_bytes = self.max_lines, self.max_bytes
        ended_dropping: list[RunLog] = []
        long_out = 0
        for _ in range(len(pending)):
            run, source, message = pending.popleft()
            size = len(message)
            if size > _LONG:
                long_out += size
            if not message.isascii() or "\x00" in message:
                message = storable_text(message)
                size = _size(message)
            if source is not None and (run.lines >= max_lines or run.bytes + size > max_bytes):
                self._count_dropped(run, size)
                if run.ended:
                    ended_dropping.append(run)
                continue
            if isinstance(source, logging.LogRecord):
                run.lines = seq = run.lines + 1
                run.bytes += size
                site = (source.name, source.pathname, source.lineno, source.funcName)
                extra = extras.get(site) or self.encode_extra(source)
                rows.append((run.run_id, seq, source.created, source.levelname, message, extra))
            elif source is None:  # the end of a run that dropped lines
                self._report_dropped(run, rows)
            else:
                run.lines = seq = run.lines + 1
                run.bytes += size
                ts, level, extra = source
                rows.append((run.run_id, seq, ts, level, message, extra))
        for run in ended_dropping:
            self._report_dropped(run, rows)
        self._long_out += long_out
        return rows

    def _report_dropped(self, run: RunLog, rows: list[LogRow]) -> None:
        with self._guard:
            dropped, dropped_bytes = run.dropped, run.dropped_bytes
            run.dropped = run.dropped_bytes = 0
        if dropped:
            # Counted as a kept line, so that a line logged later still gets a new number.
            run.lines += 1
            message = (
                f"{dropped} log lines ({dropped_bytes} bytes) dropped: "
                f"a run keeps at most {self.max_lines} lines or {self.max_bytes} bytes"
            )
            rows.append((run.run_id, run.lines, time.time(), "WARNING", message, b""))

    def requeue(self, rows: list[LogRow]) -> None:
        """Put back rows whose write failed, ahead of newer ones."""
        self._failed[:0] = rows

    @property
    def pending(self) -> int:
        """Records and lines waiting to be written."""
        return len(self._pending) + len(self._failed)

    def encode_extra(self, record: logging.LogRecord) -> Payload:
        """The logger name, source location and extra fields of a record, serialized.

        A record without extra fields is the common case: its encoding depends only on its
        call site, so it is made once per call site and then reused.
        """
        fields = record.__dict__
        if len(fields) != _PLAIN_SIZE and not fields.keys() <= _STANDARD_ATTRS:
            extra_keys = [k for k in fields.keys() - _STANDARD_ATTRS if not k.startswith("_")]
            if extra_keys:
                return self._encode_with(record, extra_keys)
        site = (record.name, record.pathname, record.lineno, record.funcName)
        encoded = self._extras.get(site)
        if encoded is None:
            if len(self._extras) >= _EXTRAS_CACHED:
                self._extras.clear()
            encoded = self._extras[site] = self._encode_with(record, [])
        return encoded

    def _encode_with(self, record: logging.LogRecord, extra_keys: list[str]) -> Payload:
        if not extra_keys and self.plain_json:
            # The same JSON that json.dumps gives, without building a dict for it.
            return (
                f'{{"logger":{_quote(record.name)},"file":{_quote(record.pathname)},'
                f'"line":{int(record.lineno)},"function":{_quote(record.funcName)}}}'
            )
        extra: dict[str, Any] = {
            "logger": record.name,
            "file": record.pathname,
            "line": record.lineno,
            "function": record.funcName,
        }
        fields = record.__dict__
        for key in extra_keys:
            value = fields[key]
            extra[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        return self._dump(extra)
