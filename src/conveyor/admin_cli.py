"""Admin commands of the ``conveyor`` command line, all through :class:`conveyor.admin.Admin`.

::

    conveyor info SETTINGS [--json]
    conveyor runs SETTINGS [--status S] [--function F] [--key K] [--q TEXT] [--limit N] [--json]
    conveyor logs SETTINGS RUN_ID [--follow] [--level L] [--q TEXT] [--json]
    conveyor enqueue SETTINGS NAME [--args JSON] [--at EPOCH] [--json]
    conveyor abort SETTINGS KEY [--reason TEXT] [--json]
    conveyor retry SETTINGS KEY [--json]

``SETTINGS`` is the dotted path of the worker's settings (``myapp.worker.settings``). Output
is a table for people, or JSON with ``--json`` (``logs --json`` prints one object per line).
Exit status: 0 on success, 2 for bad input (malformed JSON, unknown task, job or run,
arguments that do not fit, an action the job's status forbids), 1 when the backend fails.

The main command line adds these with :func:`add_admin_commands` and runs a parsed command
with :func:`run_admin_command`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from conveyor.admin import Admin, AdminError, LogEntry
from conveyor.errors import (
    ArgumentsError,
    ConfigurationError,
    ConveyorError,
    JobNotFoundError,
    UnknownFunctionError,
)

#: Errors caused by what the user typed: exit status 2.
INPUT_ERRORS = (
    AdminError,
    ArgumentsError,
    ConfigurationError,
    JobNotFoundError,
    UnknownFunctionError,
)
#: Seconds between reads of ``logs --follow`` while the run goes on.
FOLLOW_INTERVAL_S = 1.0

Handler = Callable[[Admin, argparse.Namespace, TextIO], Awaitable[int]]


class InputError(ConveyorError):
    """Command-line input that cannot be used (malformed ``--args`` JSON ...)."""


def add_admin_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``info``, ``runs``, ``logs``, ``enqueue``, ``abort`` and ``retry`` to a parser.

    Each sets ``admin_command`` on the parsed arguments; pass those to
    :func:`run_admin_command`.

    Args:
        subparsers: What ``parser.add_subparsers()`` returned.
    """

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(admin_command=name)
        parser.add_argument("settings", help="dotted path of the worker settings")
        parser.add_argument("--json", action="store_true", help="print JSON for machines")
        return parser

    command("info", "Show queue counts, the last 24 h and live workers.")

    runs = command("runs", "List runs, newest first.")
    runs.add_argument("--status", help="running, complete, failed, aborted or retried")
    runs.add_argument("--function", help="only runs of this task")
    runs.add_argument("--key", help="only runs of this job")
    runs.add_argument("--q", help="only runs whose error contains this text")
    runs.add_argument("--offset", type=int, default=0, help="runs to skip")
    runs.add_argument("--limit", type=int, default=20, help="runs to show (default 20)")

    logs = command("logs", "Print the log lines of a run.")
    logs.add_argument("run_id", help="the run's id (see `conveyor runs`)")
    logs.add_argument("--follow", "-f", action="store_true", help="wait for new lines")
    logs.add_argument("--level", help="minimum level (debug, info, warning, error)")
    logs.add_argument("--q", help="only lines containing this text")
    logs.add_argument("--limit", type=int, default=500, help="lines per read")

    enqueue = command("enqueue", "Enqueue a task, checking its arguments first.")
    enqueue.add_argument("name", help="the task's registered name")
    enqueue.add_argument("--args", default="{}", help="arguments as a JSON object: '{\"a\": 1}'")
    enqueue.add_argument("--at", type=float, help="epoch seconds to run at (default: now)")

    abort = command("abort", "Abort a job: a queued one never runs, a running one is cancelled.")
    abort.add_argument("key", help="the job's key")
    abort.add_argument("--reason", default="aborted from the command line")

    retry = command("retry", "Run a failed or aborted job again, with the same arguments.")
    retry.add_argument("key", help="the job's key")


def load_settings(path: str) -> dict[str, Any]:
    """Import worker settings by dotted path, as the worker command does."""
    from conveyor import settings as settings_module

    loader = getattr(settings_module, "load_settings", None) or settings_module.import_settings
    return dict(loader(path))


async def run_admin_command(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run a command parsed by a parser that :func:`add_admin_commands` extended.

    Args:
        args: The parsed arguments.
        stdout: Where results go (``sys.stdout``).
        stderr: Where the one-line error goes (``sys.stderr``).

    Returns:
        The exit status: 0, 2 for bad input, 1 when the backend failed.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    handler = _HANDLERS[args.admin_command]
    try:
        admin = Admin.from_settings(load_settings(args.settings))
        async with admin:
            return await handler(admin, args, out)
    except (InputError, *INPUT_ERRORS) as exc:
        print(f"error: {exc}", file=err)
        return 2
    except ConveyorError as exc:
        print(f"error: {exc}", file=err)
        return 1


def actor() -> str:
    """Who runs the command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


# Formatting


def when(ts: float | None) -> str:
    """A time for tables: UTC, to the second."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: float | None) -> str:
    """A duration for tables."""
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _clip(text: str | None, width: int = 60) -> str:
    lines = (text or "").strip().splitlines()
    first = lines[0] if lines else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def _dump(data: Any, out: TextIO) -> None:
    print(json.dumps(data, indent=2, sort_keys=True), file=out)


# Commands


async def _info(admin: Admin, args: argparse.Namespace, out: TextIO) -> int:
    overview = await admin.overview()
    if args.json:
        _dump(overview.to_dict(), out)
        return 0
    for state in overview.queues:
        latency = seconds(state.latency_s) + ("" if state.latency_exact else "+")
        print(
            f"queue {state.name}: {state.queued} queued, {state.active} running, "
            f"{state.scheduled} scheduled; oldest waiting {latency}",
            file=out,
        )
    print(f"last 24 h: {overview.completed} completed, {overview.failed} failed", file=out)
    print(f"workers: {len(overview.workers)}", file=out)
    if overview.workers:
        rows = [
            (
                w.id,
                w.queue,
                f"{len(w.running)}/{w.concurrency}",
                ", ".join(sorted({r.function for r in w.running})) or "-",
                when(w.updated),
            )
            for w in overview.workers
        ]
        print(table(("ID", "QUEUE", "BUSY", "RUNNING", "SEEN"), rows), file=out)
    return 0


async def _runs(admin: Admin, args: argparse.Namespace, out: TextIO) -> int:
    page = await admin.runs(
        status=args.status,
        function=args.function,
        key=args.key,
        q=args.q,
        offset=args.offset,
        limit=args.limit,
    )
    if args.json:
        _dump(page.to_dict(), out)
        return 0
    rows = [
        (
            r.run_id,
            when(r.started),
            r.status,
            r.function,
            r.attempt,
            seconds(r.duration_s),
            r.key,
            _clip(r.error),
        )
        for r in page.runs
    ]
    headers = ("RUN", "STARTED", "STATUS", "FUNCTION", "TRY", "TOOK", "KEY", "ERROR")
    print(table(headers, rows), file=out)
    last = page.offset + len(page.runs)
    print(f"{page.offset + 1 if page.runs else 0}-{last} of {page.total} runs", file=out)
    return 0


def _print_line(line: LogEntry, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(line.to_dict(), sort_keys=True), file=out)
    else:
        print(f"{when(line.ts)} {line.level:<8} {line.message}", file=out)


async def _logs(admin: Admin, args: argparse.Namespace, out: TextIO) -> int:
    cursor = 0
    while True:
        page = await admin.logs(
            args.run_id, cursor=cursor, limit=args.limit, level=args.level, q=args.q
        )
        for line in page.lines:
            _print_line(line, args.json, out)
        out.flush()
        cursor = page.next_cursor
        if page.more:
            continue
        if not args.follow or page.run_status != "running":
            return 0
        await asyncio.sleep(FOLLOW_INTERVAL_S)


async def _enqueue(admin: Admin, args: argparse.Namespace, out: TextIO) -> int:
    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise InputError(f"--args is not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(arguments, dict):
        raise InputError(f"--args must be a JSON object, got {type(arguments).__name__}")
    key = await admin.enqueue(
        args.name, arguments, scheduled_at=args.at, trigger="cli", actor=actor()
    )
    if args.json:
        _dump({"key": key, "status": "queued", "function": args.name}, out)
    else:
        print(key, file=out)
    return 0


async def _abort(admin: Admin, args: argparse.Namespace, out: TextIO) -> int:
    status = await admin.abort(args.key, args.reason, actor=actor())
    if args.json:
        _dump({"key": args.key, "status": status}, out)
    else:
        print(f"job {args.key}: {status}", file=out)
    return 0


async def _retry(admin: Admin, args: argparse.Namespace, out: TextIO) -> int:
    key = await admin.retry(args.key, trigger="cli", actor=actor())
    if args.json:
        _dump({"key": key, "status": "queued"}, out)
    else:
        print(f"job {key}: queued again", file=out)
    return 0


_HANDLERS: dict[str, Handler] = {
    "info": _info,
    "runs": _runs,
    "logs": _logs,
    "enqueue": _enqueue,
    "abort": _abort,
    "retry": _retry,
}

__all__ = ["INPUT_ERRORS", "InputError", "add_admin_commands", "run_admin_command"]
