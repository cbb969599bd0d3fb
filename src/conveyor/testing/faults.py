"""Fault injection for tests: a backend that hangs, drops or loses replies, a worker that
dies or freezes.

Two tools, each a context manager that cleans up after itself:

* :class:`FaultProxy` is a TCP proxy in front of a real server (Redis, PostgreSQL). Clients
  connect to the proxy's URL (:meth:`FaultProxy.url`), from the test or from a worker
  subprocess, and the test pauses, cuts, slows or drops their traffic. It runs in its own
  thread, so its controls work the same from sync and async tests.
* :class:`WorkerProcess` is a worker subprocess running :mod:`conveyor.testing.tasks`, which
  the test kills (SIGKILL), stalls (SIGSTOP, a frozen event loop or VM), resumes or stops.

A lease test, for example:

    with FaultProxy.for_url(redis_url) as proxy:
        async with WorkerProcess(proxy.url(queue_url), "default") as worker:
            ...
            proxy.pause()    # the worker can no longer renew its lease
            ...
            proxy.resume()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import IO, Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

from conveyor.testing.fixtures import worker_process_command
from conveyor.testing.helpers import wait_until

T = TypeVar("T")

#: Seconds a control of the proxy, or a signal's effect on a process, may take.
CONTROL_TIMEOUT_S = 10.0
#: The most bytes the proxy reads at once.
CHUNK_SIZE = 64 * 1024
#: The port of each URL scheme, when a URL names none.
DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432}


class FaultProxy:
    """A TCP proxy in front of a server, whose traffic the test controls.

    It listens on ``127.0.0.1`` on a free port and forwards each client connection to the
    server on a connection of its own. Every control returns once it is in effect:

    * :meth:`pause` holds every byte in both directions (connections stay open, so clients
      hang until their own timeout); :meth:`resume` forwards what was held back.
    * :meth:`cut` closes every connection and closes new ones as soon as they are accepted,
      until :meth:`heal`.
    * :meth:`slow` delays every chunk it forwards.
    * :meth:`drop_next_reply` swallows the next reply and closes its connection: the request
      ran on the server but the client never hears of it.

    Pause, cut and slow are independent switches: a cut proxy that heals is still paused if
    it was paused.

    Args:
        host: The server's host.
        port: The server's port.

    Example:

        with FaultProxy("127.0.0.1", 6379) as proxy:
            client = redis.asyncio.Redis.from_url(proxy.url("redis://127.0.0.1:6379/0"))
            proxy.cut()
            ...
    """

    def __init__(self, host: str, port: int) -> None:
        self.target_host = host
        self.target_port = port
        #: Where the proxy listens (its port is known once started).
        self.host = "127.0.0.1"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        # Only the proxy's thread touches these; start() resets them.
        self._flowing = asyncio.Event()
        self._refusing = False
        self._delay_s = 0.0
        self._drop_filter: bytes | None = None
        self._replies_dropped = 0

    @classmethod
    def for_url(cls, url: str) -> FaultProxy:
        """A proxy in front of the server of a Redis or PostgreSQL URL (not started).

        Args:
            url: A server URL such as ``redis://127.0.0.1:6379/0``.

        Raises:
            ValueError: When the URL names no port and its scheme has no default one.
        """
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        if port is None:
            raise ValueError(f"{url!r} names no port; pass FaultProxy(host, port)")
        return cls(parts.hostname or "127.0.0.1", port)

    def __repr__(self) -> str:
        target = f"{self.target_host}:{self.target_port}"
        return f"FaultProxy<{self.host}:{self.port} -> {target}>"

    # Lifecycle

    def start(self) -> Self:
        """Start listening, in a thread of its own.

        Returns:
            The proxy itself.

        Raises:
            RuntimeError: When it was already started.
        """
        if self._loop is not None:
            raise RuntimeError(f"{self!r} is already started")
        self._flowing = asyncio.Event()  # an Event belongs to the loop that first waits
        self._flowing.set()
        self._refusing, self._delay_s, self._drop_filter = False, 0.0, None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=repr(self), daemon=True)
        self._thread.start()
        try:
            self._server = self._run(self._listen())
        except BaseException:
            self.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        """Close every connection, stop listening and end the proxy's thread.

        Closing a proxy that is not running does nothing.
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._run(self._shut_down())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CONTROL_TIMEOUT_S)
            if not thread.is_alive():
                loop.close()
            self._loop, self._thread, self._server = None, None, None
            self.port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Controls

    def url(self, original: str) -> str:
        """``original`` with its host and port replaced by the proxy's.

        The scheme, user, password, database, path and query stay as they are.

        Args:
            original: A URL of the proxied server.

        Raises:
            RuntimeError: When the proxy is not started.
            ValueError: When ``original`` names another port than the proxied server's.
        """
        if self.port == 0:
            raise RuntimeError(f"{self!r} is not started; use it in a with block")
        parts = urlsplit(original)
        if parts.port is not None and parts.port != self.target_port:
            raise ValueError(
                f"{original!r} names port {parts.port}, but {self!r} forwards to "
                f"port {self.target_port}"
            )
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{self.host}:{self.port}"))

    def pause(self) -> None:
        """Stop forwarding bytes in both directions; connections stay open.

        New connections are accepted but nothing they send is forwarded.
        """
        self._run(_call(self._flowing.clear))

    def resume(self) -> None:
        """Forward again, starting with the bytes held back while paused."""
        self._run(_call(self._flowing.set))

    def cut(self) -> None:
        """Close every open connection, both sides at once, and close new ones as soon as
        they are accepted, until :meth:`heal`."""
        self._run(self._cut())

    def heal(self) -> None:
        """Accept and forward new connections again after :meth:`cut`."""
        self._run(_call(lambda: setattr(self, "_refusing", False)))

    def slow(self, delay_s: float) -> None:
        """Delay every chunk forwarded, in either direction, by ``delay_s`` seconds.

        A round trip (a request and its reply) takes at least twice the delay longer.

        Args:
            delay_s: Seconds added to each chunk; 0 removes the delay.

        Raises:
            ValueError: When ``delay_s`` is negative.
        """
        if delay_s < 0:
            raise ValueError(f"delay_s must be 0 or more, got {delay_s}")
        self._run(_call(lambda: setattr(self, "_delay_s", delay_s)))

    def drop_next_reply(self, containing: bytes = b"") -> None:
        """Swallow the next chunk the server sends and close that client's connection.

        This models a request that ran on the server but whose reply was lost. The first
        server-to-client chunk on any connection, once armed, is dropped: arm it when the
        client under test is connected and idle (its handshake done), or narrow it with
        ``containing`` when other clients talk through the proxy too. It drops one reply;
        :attr:`replies_dropped` counts the drops.

        Args:
            containing: Drop only a chunk that contains these bytes (for example
                ``b"COMMIT"``, the tag of PostgreSQL's reply to a commit).
        """
        self._run(_call(lambda: setattr(self, "_drop_filter", containing)))

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return self._run(_call(lambda: len(self._links)))

    @property
    def replies_dropped(self) -> int:
        """How many replies :meth:`drop_next_reply` dropped so far."""
        return self._run(_call(lambda: self._replies_dropped))

    # The proxy's thread

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the proxy's loop and wait for its result."""
        if self._loop is None:
            work.close()
            raise RuntimeError(f"{self!r} is not started; use it in a with block")
        if threading.current_thread() is self._thread:
            work.close()
            raise RuntimeError("a FaultProxy cannot be controlled from its own thread")
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(CONTROL_TIMEOUT_S)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, self.host, 0)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        """Serve one client connection (asyncio's stream server runs it in a task)."""
        if self._refusing:
            client.transport.abort()
            return
        link = _Link(client)
        self._links.add(link)
        try:
            server_reader, link.server = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            if link not in self._links:  # cut while connecting
                link.abort()
                return
            link.pumps = [
                asyncio.create_task(self._pump(link, client_reader, link.server, reply=False)),
                asyncio.create_task(self._pump(link, server_reader, client, reply=True)),
            ]
            await asyncio.gather(*link.pumps, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            # Cancelled only by close(); a handler that ends cancelled makes asyncio's
            # stream server (Python 3.11) log an error.
            self._close(link, abort=True)

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        reply: bool,
    ) -> None:
        """Forward one direction of a connection until either side closes."""
        try:
            while True:
                chunk = await source.read(CHUNK_SIZE)
                if chunk and self._delay_s:
                    await asyncio.sleep(self._delay_s)
                # Nothing, not even the end of a stream, passes while paused. No await
                # between this gate and the write: a pause in effect holds every chunk.
                await self._flowing.wait()
                if not chunk:
                    break
                if reply and self._drop_filter is not None and self._drop_filter in chunk:
                    self._drop_filter = None
                    self._replies_dropped += 1
                    self._close(link, abort=True)
                    return
                sink.write(chunk)
                await sink.drain()
        except OSError:
            self._close(link, abort=True)
            return
        self._close(link, abort=False)

    def _close(self, link: _Link, *, abort: bool) -> None:
        self._links.discard(link)
        if abort:
            link.abort()
        else:
            link.close()

    async def _cut(self) -> None:
        self._refusing = True
        links = list(self._links)
        for link in links:
            self._close(link, abort=True)
        await asyncio.gather(*(link.closed() for link in links))

    async def _shut_down(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


class _Link:
    """One client connection and the proxy's connection to the server for it."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.pumps: list[asyncio.Task[None]] = []

    def _writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.server) if w is not None]

    def abort(self) -> None:
        """Close both sides at once, dropping whatever is buffered."""
        for writer in self._writers():
            writer.transport.abort()
        self._stop_pumps()

    def close(self) -> None:
        """Close both sides after flushing what was already forwarded."""
        for writer in self._writers():
            writer.close()
        self._stop_pumps()

    def _stop_pumps(self) -> None:
        current = asyncio.current_task()
        for task in self.pumps:
            if task is not current:
                task.cancel()

    async def closed(self) -> None:
        """Wait until both sockets are closed."""
        for writer in self._writers():
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _call(action: Callable[[], T]) -> T:
    return action()


class WorkerProcess:
    """A worker subprocess for fault tests (``python -m conveyor.testing.worker_process``).

    It runs the functions of :mod:`conveyor.testing.tasks` on one queue, with short
    timers. Its stdout and stderr go to a temporary file: :meth:`output` reads it, and the
    ``async with`` block prints it to stderr when the test fails inside it. Leaving the
    block kills the process if it still runs; the process also exits by itself if the test
    process dies.

    Args:
        url: The queue URL (a proxy's URL, to put a :class:`FaultProxy` in between).
        queue: The queue's name.
        lease_s: Seconds a claimed job's lease lasts without renewal.
        concurrency: How many jobs it runs at once.
        start_timeout_s: Seconds :meth:`start` waits for the worker to be ready.

    Example:

        async with WorkerProcess(url, "default", lease_s=1.0) as worker:
            worker.stall()
            ...
            worker.resume()
    """

    def __init__(
        self,
        url: str,
        queue: str = "default",
        *,
        lease_s: float = 2.0,
        concurrency: int = 10,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.queue = queue
        self.lease_s = lease_s
        self.concurrency = concurrency
        self.start_timeout_s = start_timeout_s
        # The log lives as long as this object: the finalizer closes it.
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer = weakref.finalize(self, _clean_up, None, self._log)

    def __repr__(self) -> str:
        pid = self._process.pid if self._process is not None else None
        return f"WorkerProcess<pid={pid}, queue={self.queue!r}>"

    @property
    def command(self) -> list[str]:
        """The worker's command line."""
        return worker_process_command(
            self.url, self.queue, str(self.lease_s), f"--concurrency={self.concurrency}"
        )

    @property
    def pid(self) -> int:
        """The process id.

        Raises:
            RuntimeError: When the process was not started.
        """
        return self._started().pid

    @property
    def alive(self) -> bool:
        """Whether the process runs (a stalled process is alive)."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process ended (``-9`` after :meth:`kill`), else None."""
        return self._process.poll() if self._process is not None else None

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    async def start(self) -> None:
        """Start the process and wait until it is connected to its queue.

        Raises:
            RuntimeError: When it was already started, or exited before it was ready.
            TimeoutError: When it was not ready within ``start_timeout_s`` (it is killed).
        """
        if self._process is not None:
            raise RuntimeError(f"{self!r} was already started")
        # Popen rather than asyncio's subprocesses: the process must belong to no event
        # loop, so that kill() and stall() work anywhere, even in cleanup after a failure.
        self._process = subprocess.Popen(  # noqa: ASYNC220
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # Its own process group: a stalled worker orphaned by a dead test gets SIGHUP.
            start_new_session=True,
        )
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _clean_up, self._process, self._log)
        try:
            await wait_until(
                lambda: "ready" in self.output().splitlines() or not self.alive,
                timeout=self.start_timeout_s,
                message=f"{self!r} ready",
            )
        except TimeoutError:
            self.kill()
            raise TimeoutError(
                f"{self!r} was not ready within {self.start_timeout_s}s; its output:\n"
                f"{self.output()}"
            ) from None
        if not self.alive:
            raise RuntimeError(
                f"{self!r} exited with {self.returncode} before it was ready; its output:\n"
                f"{self.output()}"
            )

    def kill(self) -> None:
        """Kill the process with SIGKILL (a crash: nothing runs after it) and reap it."""
        process = self._started()
        process.kill()
        process.wait(CONTROL_TIMEOUT_S)

    def stall(self) -> None:
        """Freeze the process with SIGSTOP, as a blocked event loop or a paused VM would.

        It holds its connections and leases but runs nothing until :meth:`resume`. On
        SQLite, a process stalled inside a write transaction (the worker writes several
        times a second) keeps the database locked: other writers wait for the busy timeout,
        then fail.
        """
        self._started().send_signal(signal.SIGSTOP)
        self._wait_for_state(stopped=True)

    def resume(self) -> None:
        """Let a stalled process run again (SIGCONT)."""
        self._started().send_signal(signal.SIGCONT)
        self._wait_for_state(stopped=False)

    async def terminate(self, timeout: float = 30.0) -> int:
        """Stop the process gracefully (SIGTERM) and wait until it exits.

        A stalled process is resumed so that it can handle the signal.

        Args:
            timeout: Seconds to wait; the process is then killed.

        Returns:
            The exit status (0 after a clean shutdown).

        Raises:
            TimeoutError: When it did not exit in time.
        """
        process = self._started()
        process.terminate()
        process.send_signal(signal.SIGCONT)
        try:
            await wait_until(
                lambda: process.poll() is not None, timeout=timeout, message=f"{self!r} exit"
            )
        except TimeoutError:
            self.kill()
            raise TimeoutError(
                f"{self!r} did not exit within {timeout}s of SIGTERM; its output:\n{self.output()}"
            ) from None
        return process.returncode

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is None:
            return
        if exc is not None:
            print(f"--- output of {self!r} ---\n{self.output()}", file=sys.stderr)
        if self._process.poll() is None:
            self.kill()

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self!r} is not started; call start() or use async with")
        return self._process

    def _wait_for_state(self, *, stopped: bool) -> None:
        """Wait until the kernel shows the process stopped (or running again).

        Signals are delivered asynchronously; without ``/proc`` this returns at once.
        """
        stat = f"/proc/{self.pid}/stat"
        deadline = time.monotonic() + CONTROL_TIMEOUT_S
        while os.path.exists(stat) and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with open(stat) as file:
                    state = file.read().rpartition(")")[2].split()[0]
                if (state in ("T", "t")) == stopped or state in ("Z", "X"):
                    return
            time.sleep(0.001)


def _clean_up(process: subprocess.Popen[bytes] | None, log: IO[bytes]) -> None:
    """Kill a process left running and close its log (when its WorkerProcess is collected)."""
    if process is not None and process.poll() is None:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(CONTROL_TIMEOUT_S)
    log.close()


__all__ = ["FaultProxy", "WorkerProcess"]
