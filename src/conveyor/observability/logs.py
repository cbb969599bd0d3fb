"""Per-run log capture.

While a job runs, a :class:`contextvars.ContextVar` names its run. A logging handler that the
worker installs on the root logger attaches every record emitted in that context (the task,
its hooks, threads started with a copied context) to the run, whatever the logger. Lines
are buffered in memory and written in batches by the worker's writer: at the end of the run
and every few seconds while it goes on, so that a console can tail a running job.

A run keeps at most ``max_lines`` lines or ``max_bytes`` of messages; after that, one line
says how much was dropped.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from conveyor.backends.base import LogLine, Payload

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


#: The run whose lines are being captured in this context (a task, or a thread started
#: with a copied context). Context-local, so it is not shared state between jobs.
current_run: contextvars.ContextVar[RunLog | None] = contextvars.ContextVar(
    "conveyor_current_run", default=None
)


def _quote(text: str | None) -> str:
    return "null" if text is None else encode_basestring_ascii(text)


class RunLog:
    """The capture state of one run: what it kept and what it dropped.

    The counters are changed only under the sink's lock; the lines themselves go straight
    to the sink's buffer.

    Args:
        run_id: The run's id.
        sink: The worker's :class:`LogSink` that receives the lines.
    """

    __slots__ = ("bytes", "dropped", "dropped_bytes", "lines", "run_id", "sink")

    def __init__(self, run_id: str, sink: LogSink) -> None:
        self.run_id = run_id
        self.sink = sink
        self.lines = 0
        self.bytes = 0
        self.dropped = 0
        self.dropped_bytes = 0


class LogSink(logging.Handler):
    """The worker's handler: routes records of its own runs to one buffer for the writer.

    A record costs one pass: its message is formatted, its extra fields are encoded (the
    usual ones once per call site), and under one short lock the run's counters are checked,
    the line gets its sequence number and joins the buffer, so the buffer holds each run's
    lines in sequence order.

    Args:
        dump: Serializes the extra fields of a line.
        level: The lowest level captured.
        max_lines: Per-run line cap.
        max_bytes: Per-run byte cap.
        plain_json: ``dump`` is the standard JSON serializer, so the usual extra fields
            may be written directly as JSON text.
    """

    def __init__(
        self,
        dump: Callable[[Any], Payload],
        level: int = logging.INFO,
        max_lines: int = 10_000,
        max_bytes: int = 2_000_000,
        plain_json: bool = False,
    ) -> None:
        super().__init__(level)
        self.plain_json = plain_json
        self.current = current_run
        self._dump = dump
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._pending: list[LogLine] = []
        # Orders the lines of a run logged at once from several threads; held for a few
        # attribute updates and an append, never while calling out.
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
        """End the current run's capture: report dropped lines in one last line."""
        run = self.current.get()
        if run is not None and run.sink is self and run.dropped:
            self._report_dropped(run)
        self.current.reset(token)

    def _report_dropped(self, run: RunLog) -> None:
        message = (
            f"{run.dropped} log lines ({run.dropped_bytes} bytes) dropped: "
            f"a run keeps at most {self.max_lines} lines or {self.max_bytes} bytes"
        )
        with self._guard:
            # Counted as a kept line, so that a line logged later still gets a new number.
            run.lines = seq = run.lines + 1
            run.dropped = run.dropped_bytes = 0
            self._pending.append(LogLine(run.run_id, seq, time.time(), "WARNING", message, b""))

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
            if record.exc_info and record.exc_info[0] is not None:
                formatter = logging.Formatter()
                message = f"{message}\n{formatter.formatException(record.exc_info)}"
            size = len(message) if message.isascii() else len(message.encode("utf-8", "replace"))
            if len(record.__dict__) == _PLAIN_SIZE:
                # No extra field: the encoding depends on the call site only (see encode_extra).
                site = (record.name, record.pathname, record.lineno, record.funcName)
                extra = self._extras.get(site) or self.encode_extra(record)
            else:
                extra = self.encode_extra(record)
            with self._guard:
                if run.lines >= self.max_lines or run.bytes + size > self.max_bytes:
                    run.dropped += 1
                    run.dropped_bytes += size
                    return True
                run.lines = seq = run.lines + 1
                run.bytes += size
                self._pending.append(
                    LogLine(run.run_id, seq, record.created, record.levelname, message, extra)
                )
        except Exception:
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Attach ``record`` to the current run, if it is one of ours."""
        self.handle(record)

    def take(self) -> list[LogLine]:
        """Every buffered line, removed from the buffer, each run's lines in order."""
        with self._guard:
            lines, self._pending = self._pending, []
        return lines

    def requeue(self, lines: list[LogLine]) -> None:
        """Put back lines whose write failed, ahead of newer ones."""
        with self._guard:
            self._pending[:0] = lines

    @property
    def pending(self) -> int:
        """Lines waiting to be written."""
        return len(self._pending)

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
