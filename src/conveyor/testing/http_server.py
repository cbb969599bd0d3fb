"""An HTTP proxy server for tests: the conformance suite through :class:`HttpProxy`.

:class:`ProxyServer` runs uvicorn on a free port of ``127.0.0.1``, in a thread of its own
(so that worker subprocesses reach it while a test blocks), and serves an
:class:`~conveyor.queue.http.HttpProxy` for any backend URL that a request names in its
query string: ``http://127.0.0.1:PORT/?url=<backend URL>`` (:meth:`ProxyServer.url_for`).
Each backend URL gets its queues on first use, by the name the client asks for, and every
operation including ``drop``; a dropped URL is refused from then on (a late request must
not create its storage again), and queues idle for a while are disconnected, so that a
long run does not pile up connections. One server serves a whole test session.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, quote

from conveyor.backends.http.wire import OPERATIONS
from conveyor.queue.base import Queue
from conveyor.queue.http import HttpProxy, Receive, Scope, Send

#: Seconds a backend URL may go without a request before its queues are disconnected.
IDLE_S = 30.0
#: Seconds the server takes to start or stop before the test gives up.
START_TIMEOUT_S = 30.0


class _Tenant(HttpProxy):
    """The proxy of one backend URL: its queues are made on first use, by name."""

    def __init__(self, url: str) -> None:
        super().__init__([], kinds=frozenset(OPERATIONS))
        self.url = url
        self.used = time.monotonic()
        self.busy = 0
        self.dropped = False

    def queue_for(self, name: str) -> Queue | None:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue.from_url(self.url, name=name)
        return queue

    async def _run(self, queue: Queue, kind: str, arguments: dict[str, Any]) -> Any:
        result = await super()._run(queue, kind, arguments)
        self.dropped = self.dropped or kind == "drop"
        return result

    async def close(self) -> None:
        queues, self.queues = list(self.queues.values()), {}
        for queue in queues:
            with contextlib.suppress(Exception):
                await queue.disconnect()


class ProxyServer:
    """Serves an HttpProxy for any backend URL, on a free port, in a thread; a context manager.

    Example::

        with ProxyServer() as server:
            queue = Queue.from_url(server.url_for("sqlite:///jobs.db"))
    """

    def __init__(self) -> None:
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._tenants: dict[str, _Tenant] = {}
        self._dropped: set[str] = set()

    def url_for(self, backend_url: str) -> str:
        """The HTTP URL of a queue on ``backend_url``, through this server.

        Raises:
            RuntimeError: When the server is not started.
        """
        if self.port == 0:
            raise RuntimeError("the proxy server is not started; use it in a with block")
        return f"http://127.0.0.1:{self.port}/?url={quote(backend_url, safe='')}"

    def start(self) -> Self:
        """Start serving, in a thread of its own."""
        import uvicorn

        # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets that say
        # they are TCP, and with it on, each answer waits ~40 ms for the client's delayed ACK
        # (uvicorn writes the headers and the body separately).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, interface="asgi3", lifespan="off", log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        ready = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(sock, ready)),
            name=f"conveyor-http-proxy:{self.port}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the proxy server did not start")
        return self

    def close(self) -> None:
        """Stop serving, disconnect every queue, and end the thread."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S)
        self._thread = None
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

    # The server's thread

    async def _main(self, sock: socket.socket, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        reaper = asyncio.create_task(self._reap())
        ready.set()
        try:
            await self._server.serve(sockets=[sock])
        finally:
            reaper.cancel()
            for tenant in list(self._tenants.values()):
                await tenant.close()
            self._tenants.clear()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(IDLE_S / 3)
            now = time.monotonic()
            for url, tenant in list(self._tenants.items()):
                if tenant.busy == 0 and now - tenant.used > IDLE_S:
                    del self._tenants[url]
                    await tenant.close()

    async def _app(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        url = query.get("url", [""])[0]
        if scope["type"] != "http" or not url or url in self._dropped:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"dropped or no ?url="})
            return
        tenant = self._tenants.get(url)
        if tenant is None:
            tenant = self._tenants[url] = _Tenant(url)
        tenant.busy += 1
        try:
            await tenant(scope, receive, send)
        finally:
            tenant.busy -= 1
            tenant.used = time.monotonic()
        if tenant.dropped and self._tenants.get(url) is tenant:
            # Its storage is gone: a late request must not create it again.
            self._dropped.add(url)
            del self._tenants[url]
            await tenant.close()
