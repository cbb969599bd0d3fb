"""The command line.

``conveyor SETTINGS`` runs a worker with the settings found at the dotted path ``SETTINGS``
(SAQ's ``saq SETTINGS``, with the same options); ``conveyor demo`` runs a worker, a producer
and a live view of what happens, on an embedded SQLite file.

Exit codes: 0 success; 1 a failed health check, or a worker that failed while running; 2 a
usage or configuration error; 130 interrupted before the worker started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.settings import check_settings, import_settings, worker_from_settings
from conveyor.worker.supervisor import SUPERVISOR_PID_ENV, Supervisor

logger = logging.getLogger("conveyor.cli")


_LOG_LEVELS = {0: logging.ERROR, 1: logging.INFO}
_HANDLER_NAME = "conveyor-cli"
#: Seconds the supervisor waits, beyond the workers' own grace periods, before SIGKILL.
_STOP_MARGIN_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``conveyor SETTINGS [options]``."""
    parser = argparse.ArgumentParser(
        prog="conveyor",
        usage=(
            "%(prog)s [-h] [--workers N] [--verbose] [--burst] [--check] settings\n"
            "       %(prog)s demo [--jobs N] [--forever] [--db PATH]\n"
            "       %(prog)s web SETTINGS [-e SETTINGS ...] [--host H] [--port P]\n"
            "       %(prog)s {info,runs,logs,enqueue,abort,retry} SETTINGS ..."
        ),
        description="Start a Conveyor worker (or, with 'demo', watch one at work).",
        epilog=(
            "Run 'conveyor demo --help' for the demo's options. The settings are a dict of "
            "Worker arguments (queue, functions, concurrency, cron_jobs, startup, ...), or a "
            "callable returning one; the current directory is on the import path."
        ),
    )
    parser.add_argument(
        "settings",
        help="Namespaced variable containing worker settings, e.g. module_a.settings",
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=1, help="Number of worker processes"
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="count",
        default=0,
        help="Logging level: 0: ERROR, 1: INFO, 2: DEBUG (repeat: -vv)",
    )
    parser.add_argument(
        "--burst", action="store_true", help="Stop once the queue has no job left to run"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="Perform a health check: exit 0 if a worker of the queue is alive, else 1",
    )
    parser.add_argument(
        "--web",
        action="store_true",
        help="Serve the web console next to the worker (see also 'conveyor web SETTINGS')",
    )
    parser.add_argument(
        "--extra-web-settings",
        "-e",
        action="append",
        default=[],
        help="Additional worker settings to monitor in the web console",
    )
    parser.add_argument("--port", type=int, default=None, help="Web console port (8080)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Web console address (127.0.0.1; any other address requires auth)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments, without the program name (``sys.argv[1:]`` by default).

    Returns:
        The exit code.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list and args_list[0] == "demo":
            from conveyor.demo import main as demo_main

            return demo_main(args_list[1:])
        if args_list and args_list[0] == "web":
            from conveyor.web.cli import main as web_main

            return web_main(args_list[1:])
        if args_list and args_list[0] in ADMIN_COMMANDS:
            return _run_admin(args_list)
        return _run(build_parser().parse_args(args_list))
    except KeyboardInterrupt:
        print("conveyor: interrupted", file=sys.stderr)
        return 130


#: Subcommands that read or change a queue through the admin service.
ADMIN_COMMANDS = frozenset({"info", "runs", "logs", "enqueue", "abort", "retry"})


def _run_admin(args_list: list[str]) -> int:
    from conveyor.admin_cli import add_admin_commands, run_admin_command

    parser = argparse.ArgumentParser(prog="conveyor")
    add_admin_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(args_list)
    configure_logging(0)
    return asyncio.run(run_admin_command(args))


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    if (args.extra_web_settings or args.port is not None) and not args.web:
        print("conveyor: error: --port and --extra-web-settings go with --web", file=sys.stderr)
        return 2
    if args.web and args.workers > 1:
        print(
            "conveyor: error: --web runs the console inside the worker process; with "
            "--workers N run it on its own: conveyor web SETTINGS",
            file=sys.stderr,
        )
        return 2
    try:
        settings = import_settings(args.settings)
        if args.burst:
            settings["burst"] = True
        settings = check_settings(settings)
        if args.workers > 1:
            worker_from_settings(settings)  # fail here, once, rather than in every child
    except ConfigurationError as exc:
        return _configuration_error(exc)
    if args.check:
        return asyncio.run(check_health(settings))
    if args.workers > 1:
        return supervise(args, settings)
    web = (args.extra_web_settings or [], args.host, args.port or 8080) if args.web else None
    return asyncio.run(run_worker(settings, web))


def configure_logging(verbosity: int) -> None:
    """Log to stderr: 0 errors only, 1 info, 2 or more debug.

    The level is set on the handler, not only on the root logger, because a worker lowers
    the root logger's level to capture its jobs' log lines.
    """
    level = _LOG_LEVELS.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(level)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)


def _configuration_error(exc: ConfigurationError) -> int:
    if exc.__cause__ is not None:
        # The user's module raised while importing: its traceback is what they need.
        traceback.print_exception(exc.__cause__, file=sys.stderr)
    print(f"conveyor: error: {exc}", file=sys.stderr)
    return 2


async def run_worker(
    settings: dict[str, Any], web: tuple[Sequence[str], str, int] | None = None
) -> int:
    """Run a worker until SIGTERM or SIGINT, then stop it gracefully.

    Running jobs get the worker's ``shutdown_grace_period_s`` to finish; the rest are
    re-queued. A second SIGTERM or SIGINT makes the stop fast (:meth:`Worker.hurry`). Under
    a supervisor, the worker also stops when the supervisor goes away.

    Args:
        settings: The worker's settings.
        web: ``(extra settings paths, host, port)`` to serve the console in this process.

    Returns:
        0 after a graceful stop (or the end of a burst); 1 if the worker failed; 2 for
        settings the worker refuses.
    """
    try:
        worker = worker_from_settings(settings)
    except ConfigurationError as exc:
        return _configuration_error(exc)
    console = None
    if web is not None:
        from conveyor.web import start_console

        try:
            console = await start_console(settings, *web)
        except (OSError, ConfigurationError) as exc:
            print(f"conveyor: error: the console cannot start: {exc}", file=sys.stderr)
            return 2
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def request_stop(reason: str) -> None:
        if stopping:
            # A second signal: stop now. Running jobs are re-queued at once; what cannot be
            # written within 2 s is recovered by other workers when the leases end.
            logger.warning("%s again: stopping now, running jobs are re-queued", reason)
            worker.hurry()
            return
        logger.info(
            "%s: stopping gracefully (running jobs get %ss)",
            reason,
            worker.shutdown_grace_period_s,
        )
        stopping.append(asyncio.create_task(worker.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, f"{sig.name} received")
    watcher = _watch_supervisor(request_stop)
    try:
        await worker.start()
        if stopping:
            await stopping[0]
    except Exception:
        logger.exception("worker %s failed", worker.id)
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if console is not None:
            console.cancel()
            await asyncio.gather(console, return_exceptions=True)
    return 0


def _watch_supervisor(request_stop: Callable[[str], None]) -> asyncio.Task[None] | None:
    """Under a supervisor, stop the worker when the supervisor is gone (no orphans)."""
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    if not expected or not expected.isdigit():
        return None
    parent = int(expected)

    async def watch() -> None:
        while os.getppid() == parent:  # noqa: ASYNC110 - no event tells us the parent died
            await asyncio.sleep(1.0)
        request_stop(f"supervisor (pid {parent}) is gone")

    return asyncio.create_task(watch())


def supervise(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    """Run ``args.workers`` worker processes under a :class:`Supervisor`."""
    command = [sys.executable, "-m", "conveyor", args.settings, "--workers", "1"]
    if args.verbose:
        command.append("-" + "v" * args.verbose)
    if args.burst:
        command.append("--burst")
    grace = float(settings.get("shutdown_grace_period_s") or 10.0)
    hard = float(settings.get("cancellation_hard_deadline_s") or 1.0)
    supervisor = Supervisor(
        command,
        args.workers,
        stop_timeout=grace + hard + _STOP_MARGIN_S,
        exit_zero_is_done=bool(settings.get("burst")),
        cwd=os.getcwd(),
    )
    code = asyncio.run(supervisor.run())
    if supervisor.failure is not None:
        print(f"conveyor: error: {supervisor.failure}", file=sys.stderr)
    return code


async def check_health(settings: dict[str, Any]) -> int:
    """Exit status of a health check: 0 when a worker of the queue published its record
    recently (within three of its ``stats`` intervals), else 1."""
    from conveyor.worker.worker import DEFAULT_TIMERS

    queue = settings["queue"]
    timers = {**DEFAULT_TIMERS, **(settings.get("timers") or {})}
    max_age = max(float(timers["stats"]) * 3, 5.0)
    try:
        async with queue:
            info = await queue.info()
    except Exception as exc:
        print(f"unhealthy: cannot read queue {queue.name!r}: {exc}", file=sys.stderr)
        return 1
    now = time.time()
    alive = sorted(
        worker_id
        for worker_id, record in (info.get("workers") or {}).items()
        if isinstance(record, dict)
        and record.get("queue", queue.name) == queue.name
        and now - float(record.get("updated", now)) <= max_age
    )
    if not alive:
        print(
            f"unhealthy: no worker of queue {queue.name!r} published a record in the last "
            f"{max_age:g}s",
            file=sys.stderr,
        )
        return 1
    records = info.get("workers") or {}
    hung = sum(len(records[worker_id].get("hung") or ()) for worker_id in alive)
    # Hung threads hold slots but do not make a worker unhealthy: it still runs the others.
    note = f"; {hung} hung sync thread(s) hold slots" if hung else ""
    print(f"healthy: {len(alive)} worker(s) of queue {queue.name!r}: {', '.join(alive)}{note}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("conveyor")
    except PackageNotFoundError:
        return "unknown"


__all__ = ["build_parser", "check_health", "main", "run_worker", "supervise"]
