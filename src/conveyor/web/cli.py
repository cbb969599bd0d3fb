"""``conveyor web SETTINGS [-e MORE ...]``: the console alone, over one or more queues.

No worker runs; the console reads and acts on the queues of each settings. Bound to
127.0.0.1 by default; with ``--host 0.0.0.0`` it is public, and then lets nobody in
without authentication (``CONVEYOR_AUTH_USER`` / ``CONVEYOR_AUTH_PASSWORD`` ...).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from conveyor.web.server import run_web


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``conveyor web``."""
    parser = argparse.ArgumentParser(
        prog="conveyor web",
        description="Serve the Conveyor web console for the queues of worker settings.",
    )
    parser.add_argument("settings", help="Worker settings to monitor, e.g. module_a.settings")
    parser.add_argument(
        "--extra-web-settings",
        "-e",
        action="append",
        default=[],
        help="More worker settings to monitor (repeat for several)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="Port (8080)")
    parser.add_argument("--title", default="Conveyor", help="The console's title")
    parser.add_argument(
        "--behind-proxy",
        action="store_true",
        help="The console is reached through a reverse proxy: without credentials "
        "(CONVEYOR_AUTH_PASSWORD ...) it then lets nobody in",
    )
    parser.add_argument(
        "--verbose", "-v", action="count", default=0, help="Log actions (-v) or debug (-vv)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``conveyor web``; returns the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return run_web(
        [args.settings, *args.extra_web_settings],
        args.host,
        args.port,
        title=args.title,
        behind_proxy=args.behind_proxy,
    )


__all__ = ["build_parser", "main"]
