"""Serving the console: inside a worker's event loop, or on its own for several queues.

* :func:`serve` runs uvicorn in the current event loop until cancelled (``conveyor
  SETTINGS --web`` runs it next to the worker).
* :func:`serve_settings` builds the admin service of a worker's settings (sharing its
  queue object), plus any extra settings, and serves it.
* :func:`start_console` starts that in the background and returns once it listens.
* :func:`run_web` is the blocking entry point of ``conveyor web SETTINGS [-e MORE]``: it
  monitors several queues without running a worker.

Signals stay with the caller: the server installs no handler of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import uvicorn

from conveyor.admin.service import Admin
from conveyor.web.app import console_of, create_app
from conveyor.web.auth import is_loopback_host
from conveyor.web.security import Gate

logger = logging.getLogger("conveyor.web")

#: Seconds open connections get to finish when the server stops.
GRACEFUL_S = 3


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling, closing the live streams on shutdown."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Any) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The host program (the worker's CLI) owns SIGINT and SIGTERM.
        yield

    async def shutdown(self, sockets: Any = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets)


async def serve(
    admin: Admin,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    public: bool | None = None,
    log_level: str = "warning",
    started: asyncio.Event | None = None,
    **options: Any,
) -> None:
    """Serve a console over ``admin`` in the current event loop until cancelled.

    The admin service stays connected: whoever made it disconnects it (its queue may be
    a worker's).

    Args:
        admin: The admin service.
        host: The address to bind; 127.0.0.1 by default.
        port: The port (0: any free one).
        public: Whether the console is reachable from other machines; by default, unless
            ``host`` is a loopback address or ``localhost``. A public console without
            authentication lets nobody in.
        log_level: uvicorn's log level.
        started: Set once the server listens.

    Raises:
        OSError: When the address cannot be bound (the port is in use ...).
        **options: Passed to :func:`conveyor.web.create_app` (``auth``, ``title`` ...).
    """
    app = create_app(
        admin, public=not is_loopback_host(host) if public is None else public, **options
    )
    console = console_of(app)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_S,
        access_log=False,
    )
    server = _Server(config, console.close)
    # Bind here, so that a port in use is an OSError for the caller (uvicorn would exit).
    sock = _bind(host, port)
    logger.info("console at http://%s:%s/", host, sock.getsockname()[1])
    if not console.gate.configured and (console.gate.public or console.gate.behind_proxy):
        logger.warning("the console lets nobody in. %s", Gate.SETUP_HINT)
    if started is not None:
        started.set()
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        console.close()
        await task
        raise
    finally:
        console.close()
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_settings(
    settings: Mapping[str, Any],
    extra_settings_paths: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 8080,
    **options: Any,
) -> None:
    """Serve the console of a worker's settings (and extra ones) until cancelled.

    The worker's own queue object is shared, so the console uses its connection.
    """
    admin = Admin.from_settings_list([settings, *_load_settings(extra_settings_paths)])
    try:
        await serve(admin, host, port, **options)
    finally:
        # The extra queues are the console's own; the first is the worker's.
        for queue in admin.queues[1:]:
            await queue.disconnect()


async def start_console(
    settings: Mapping[str, Any],
    extra_settings_paths: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 8080,
    **options: Any,
) -> asyncio.Task[None]:
    """Start :func:`serve_settings` in the background; return once it listens.

    For ``conveyor SETTINGS --web``: a port in use or bad extra settings fail here,
    before the worker starts. Cancel the returned task to stop the console.

    Raises:
        OSError: When the address cannot be bound.
        ConfigurationError: When extra settings cannot be loaded.
    """
    started = asyncio.Event()
    task = asyncio.create_task(
        serve_settings(settings, extra_settings_paths, host, port, started=started, **options)
    )
    listening = asyncio.create_task(started.wait())
    await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        listening.cancel()
        task.result()  # raises what stopped it
        raise RuntimeError("the console stopped before it started listening")
    return task


def _load_settings(paths: Sequence[str]) -> list[dict[str, Any]]:
    from conveyor.settings import check_settings, import_settings

    return [check_settings(import_settings(path)) for path in paths]


def run_web(
    settings_paths: Sequence[str], host: str = "127.0.0.1", port: int = 8080, **options: Any
) -> int:
    """Serve a console over the queues of several settings until SIGINT or SIGTERM.

    The blocking entry point of ``conveyor web SETTINGS [-e MORE ...]``: no worker runs.

    Args:
        settings_paths: Dotted paths of worker settings (``module.settings``).
        host: The address to bind.
        port: The port.
        **options: Passed to :func:`serve`.

    Returns:
        The exit code: 0 after a clean stop; 2 for settings that cannot be loaded or an
        address that cannot be bound.
    """
    from conveyor.errors import ConfigurationError

    try:
        admin = Admin.from_settings_list(_load_settings(settings_paths))
    except ConfigurationError as exc:
        print(f"conveyor: error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run_until_signal(admin, host, port, options))
    except OSError as exc:
        print(f"conveyor: error: cannot serve the console on {host}:{port}: {exc}", file=sys.stderr)
        return 2


async def _run_until_signal(admin: Admin, host: str, port: int, options: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    task = asyncio.create_task(serve(admin, host, port, started=started, **options))
    announce = asyncio.create_task(_announce(started, host, port, admin))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        announce.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await admin.disconnect()
    return 0


async def _announce(started: asyncio.Event, host: str, port: int, admin: Admin) -> None:
    await started.wait()
    names = ", ".join(q.name for q in admin.queues)
    print(
        f"Conveyor console for queue(s) {names}: http://{host}:{port}/ (Ctrl-C to stop)",
        file=sys.stderr,
    )


__all__ = ["run_web", "serve", "serve_settings", "start_console"]
