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
import itertools
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


#: The run whose lines are being captured in this context (a task, or a thread started
#: with a copied context). Context-local, so it is not shared state between jobs.
current_run: contextvars.ContextVar[RunLog | None] = contextvars.ContextVar(
    "conveyor_current_run", default=None
)


def _quote(text: str | None) -> str:
    return "null" if text is None else encode_basestring_ascii(text)


class RunLog:
    """The capture state of one run.

    Args:
        run_id: The run's id.
        sink: The worker's :class:`LogSink` that receives the lines.
        max_lines: The most lines kept.
        max_bytes: The most message bytes kept.
    """

    __slots__ = (
        "_lock",
        "bytes",
        "dropped",
        "dropped_bytes",
        "lines",
        "max_bytes",
        "max_lines",
        "run_id",
        "seq",
        "sink",
    )

    def __init__(self, run_id: str, sink: LogSink, max_lines: int, max_bytes: int) -> None:
        self.run_id = run_id
        self.sink = sink
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.seq = itertools.count(1)
        self.lines = 0
        self.bytes = 0
        self.dropped = 0
        self.dropped_bytes = 0
        self._lock = threading.Lock()

    def add(self, record: logging.LogRecord) -> None:
        """Attach a record to the run, unless the run's cap is reached."""
        message = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            formatter = logging.Formatter()
            message = f"{message}\n{formatter.formatException(record.exc_info)}"
        size = len(message) if message.isascii() else len(message.encode("utf-8", "replace"))
        with self._lock:
            if self.lines >= self.max_lines or self.bytes + size > self.max_bytes:
                self.dropped += 1
                self.dropped_bytes += size
                return
            self.lines += 1
            self.bytes += size
            seq = next(self.seq)
        self.sink.add(
            LogLine(
                run_id=self.run_id,
                seq=seq,
                ts=record.created,
                level=record.levelname,
                message=message,
                extra=self.sink.encode_extra(record),
            )
        )

    def close(self) -> None:
        """End the capture: report dropped lines in one last line."""
        if self.dropped:
            self.sink.add(
                LogLine(
                    run_id=self.run_id,
                    seq=next(self.seq),
                    ts=time.time(),
                    level="WARNING",
                    message=(
                        f"{self.dropped} log lines ({self.dropped_bytes} bytes) dropped: "
                        f"a run keeps at most {self.max_lines} lines or {self.max_bytes} bytes"
                    ),
                    extra=b"",
                )
            )


class LogSink(logging.Handler):
    """The worker's handler: routes records of its own runs to their buffers.

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
        return self.current.set(RunLog(run_id, self, self.max_lines, self.max_bytes))

    def end_run(self, token: contextvars.Token[RunLog | None]) -> None:
        """End the current run's capture."""
        run = self.current.get()
        if run is not None and run.sink is self:
            run.close()
        self.current.reset(token)

    def handle(self, record: logging.LogRecord) -> bool:
        """Capture ``record`` without the base class's handler lock and filters.

        The run's own lock orders its lines; records of other contexts return at once, so
        a worker's handler costs other code next to nothing.
        """
        run = self.current.get()
        if run is None or run.sink is not self:
            return False
        try:
            run.add(record)
        except Exception:
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Attach ``record`` to the current run, if it is one of ours."""
        run = self.current.get()
        if run is None or run.sink is not self:
            return
        try:
            run.add(record)
        except Exception:
            self.handleError(record)

    def add(self, line: LogLine) -> None:
        """Buffer a line for the next write."""
        self._pending.append(line)

    def take(self) -> list[LogLine]:
        """Every buffered line, removed from the buffer."""
        lines, self._pending = self._pending, []
        return lines

    def requeue(self, lines: list[LogLine]) -> None:
        """Put back lines whose write failed, ahead of newer ones."""
        self._pending[:0] = lines

    @property
    def pending(self) -> int:
        """Lines waiting to be written."""
        return len(self._pending)

    def encode_extra(self, record: logging.LogRecord) -> Payload:
        """The logger name, source location and extra fields of a record, serialized."""
        fields = record.__dict__
        extra_keys = [k for k in fields.keys() - _STANDARD_ATTRS if not k.startswith("_")]
        if not extra_keys and self.plain_json:
            # The common case, written without building a dict and calling the serializer:
            # the same JSON that json.dumps gives, at a fraction of the cost.
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
        for key in extra_keys:
            value = fields[key]
            extra[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        return self._dump(extra)
