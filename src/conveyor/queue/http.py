"""The HTTP queue: producers and workers that reach the queue through the web application.

:class:`HttpProxy` is an ASGI application serving one or more of the application's queues;
mount it in the web application (Starlette ``Mount``, FastAPI ``app.mount``, Litestar
``@asgi(is_mount=True)``) or call :meth:`HttpProxy.process` from any framework's handler.
:class:`HttpQueue` is a :class:`~conveyor.queue.base.Queue` whose every storage operation
is a request to that proxy (see :mod:`conveyor.backends.http`): enqueue, wait for results,
or run a worker, from a process that cannot reach Redis or PostgreSQL.

Every decision about a job's life is taken in the client's queue and worker, exactly as
for a queue on a local backend; the proxy runs only the backend's atomic operations, and
the fencing tokens travel with them, so the backend behind the proxy checks ownership
itself. The proxy serves every operation but ``drop`` unless told otherwise (``kinds``),
and asks the application's ``auth`` hook about every request.

The proxy never vouches for the workers it serves: it claims, recovers and renews with
``vouch=False`` (see :meth:`~conveyor.backends.base.Backend.claim`), whatever the client
sends, so that a restart of the application does not read as its remote workers' death to
a worker that sweeps the store directly; their leases end only when they expire. No client
can end other workers' leases either: ``expire_dead_leases`` is no operation of the wire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar

from conveyor.backends.base import Backend
from conveyor.backends.http import HttpBackend, wire
from conveyor.backends.http.wire import DEFAULT_KINDS, OPERATIONS, PRODUCER_KINDS
from conveyor.errors import BackendError, ConfigurationError, ConveyorError, InvalidUrlError
from conveyor.queue.base import Queue
from conveyor.serialization import Dumper, Loader

logger = logging.getLogger("conveyor.queue.http")

#: Seconds one blocking wait (``wait_for_work``, ``wait_for_finish``) may hold a request
#: at the proxy, by default.
DEFAULT_PROXY_MAX_WAIT_S = 10.0
#: The largest request body the proxy reads, by default.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyRequest:
    """What the auth hook knows about a request.

    Attributes:
        kind: The operation asked for (``enqueue``, ``claim``, ``get`` ...; ``hello`` at
            connect).
        queue: The queue it is for.
        headers: The request's headers, names in lower case.
        client: The peer's ``(host, port)``, when the server tells it.
        scope: The ASGI scope, for anything else (the path, the server's state).
    """

    kind: str
    queue: str
    headers: Mapping[str, str]
    client: tuple[str, int] | None
    scope: Mapping[str, Any]


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: The application's auth hook: ``(request) -> bool``, sync or async. False refuses the call
#: with 401; raising an exception whose ``status_code`` is 401 or 403 (Starlette's, FastAPI's
#: or Litestar's ``HTTPException``) refuses it with that status.
AuthHook = Callable[[ProxyRequest], Awaitable[bool] | bool]


class _Refused(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


class HttpProxy:
    """Serves queues to :class:`HttpQueue` clients over HTTP: an ASGI application.

    Args:
        queue: The queue to serve, or several (each client names its queue).
        auth: The application's check of each request (see :data:`AuthHook`); None lets
            every request in, for a proxy that the application guards itself.
        kinds: The operations served; by default all but ``drop`` (which deletes the
            queue's storage). :data:`PRODUCER_KINDS` serves producers only (enqueue and
            reads: no worker may claim through it).
        max_wait_s: Seconds one blocking wait may hold a request.
        max_body_bytes: Larger requests are refused with 413.

    Raises:
        ConfigurationError: For two queues of one name, or an unknown kind.

    Example::

        proxy = HttpProxy(queue, auth=lambda request: request.headers.get("authorization")
                          == f"Bearer {TOKEN}")
        app = Starlette(routes=[Mount("/queue", app=proxy)], lifespan=...)
    """

    def __init__(
        self,
        queue: Queue | Sequence[Queue],
        *,
        auth: AuthHook | None = None,
        kinds: Collection[str] = DEFAULT_KINDS,
        max_wait_s: float = DEFAULT_PROXY_MAX_WAIT_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        queues = [queue] if isinstance(queue, Queue) else list(queue)
        self.queues: dict[str, Queue] = {}
        for each in queues:
            if each.name in self.queues:
                raise ConfigurationError(f"two queues named {each.name!r} given to HttpProxy")
            self.queues[each.name] = each
        unknown = set(kinds) - set(OPERATIONS)
        if unknown:
            raise ConfigurationError(
                f"HttpProxy cannot serve {sorted(unknown)}; kinds are {sorted(OPERATIONS)}"
            )
        self.kinds = frozenset(kinds)
        self.auth = auth
        self.max_wait_s = max_wait_s
        self.max_body_bytes = max_body_bytes
        self._connecting = asyncio.Lock()

    @property
    def queue(self) -> Queue:
        """The first queue served (SAQ's ``HttpProxy.queue``)."""
        return next(iter(self.queues.values()))

    def queue_for(self, name: str) -> Queue | None:
        """The queue a request names, or None when it is not served here."""
        return self.queues.get(name)

    # Entry points

    async def process(self, body: str | bytes) -> str:
        """Answer one request body, for a handler of the application's own framework.

        The handler authenticates the request itself (the ``auth`` hook is not asked) and
        returns the answer as the response's JSON body; errors are inside the answer, so
        the status may stay 200.

        Args:
            body: The request's body.

        Returns:
            The answer, as JSON text.
        """
        _, answer = await self.handle(body, None)
        return answer.decode()

    async def handle(
        self, body: str | bytes, request: Callable[[str, str], ProxyRequest] | None
    ) -> tuple[int, bytes]:
        """Answer one request body: the HTTP status and the JSON answer.

        Args:
            body: The request's body.
            request: Builds the auth hook's view of the request from its kind and queue;
                None skips the hook (the caller has authenticated the request).
        """
        try:
            kind, name, arguments = self._parse(body)
            # The hook first: a stranger learns nothing of the queues and kinds served.
            if request is not None and self.auth is not None:
                await self._authorize(request(kind, name))
            queue = self._served(kind, name)
            result = await self._run(queue, kind, arguments)
        except _Refused as refused:
            return self._error(refused.error, refused.message)
        except BackendError as exc:
            return self._error("backend", str(exc))
        except (ConveyorError, KeyError, TypeError, ValueError) as exc:
            return self._error("bad_request", f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            logger.exception("HttpProxy: the request failed")
            return self._error("internal", f"{type(exc).__name__}: {exc}")
        return 200, wire.encode({"result": result})

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """The ASGI application: ``POST`` a request body, get its answer."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ConfigurationError(f"HttpProxy serves HTTP, not {scope['type']}")
        if scope["method"] != "POST":
            await _respond(send, 405, self._error("bad_request", "POST a JSON request")[1])
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                too_large = f"the body is larger than {self.max_body_bytes} bytes"
                await _respond(send, 413, self._error("bad_request", too_large)[1])
                return
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")

        def request(kind: str, queue: str) -> ProxyRequest:
            peer = (str(client[0]), int(client[1])) if client else None
            return ProxyRequest(kind, queue, headers, peer, scope)

        status, answer = await self.handle(bytes(body), request)
        await _respond(send, status, answer)

    # Steps

    def _parse(self, body: str | bytes) -> tuple[str, str, dict[str, Any]]:
        try:
            arguments = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Refused("bad_request", f"the body is not JSON: {exc}") from None
        if not isinstance(arguments, dict) or not isinstance(arguments.get("kind"), str):
            raise _Refused("bad_request", 'the body must be a JSON object with a "kind"')
        kind = arguments.pop("kind")
        name = arguments.pop("queue", None)
        if name is None and len(self.queues) == 1:
            name = self.queue.name
        return kind, str(name), arguments

    def _served(self, kind: str, name: str) -> Queue:
        if kind != "hello" and kind not in OPERATIONS:
            raise _Refused("bad_request", f"unknown kind {kind!r}")
        if kind != "hello" and kind not in self.kinds:
            raise _Refused(
                "not_served",
                f"this proxy does not serve {kind!r} (HttpProxy(..., kinds=...) decides)",
            )
        queue = self.queue_for(name)
        if queue is None:
            served = ", ".join(map(repr, self.queues)) or "none"
            raise _Refused("unknown_queue", f"no queue {name!r} here; served: {served}")
        return queue

    async def _authorize(self, request: ProxyRequest) -> None:
        assert self.auth is not None
        try:
            allowed = self.auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if status not in (401, 403):
                raise
            detail = getattr(exc, "detail", None) or str(exc)
            raise _Refused("unauthorized" if status == 401 else "forbidden", str(detail)) from exc
        if not allowed:
            raise _Refused("unauthorized", "the application's auth hook refused the call")

    async def _run(self, queue: Queue, kind: str, arguments: dict[str, Any]) -> Any:
        async with self._connecting:  # once, not once per concurrent first request
            await queue.connect()
        backend = queue.backend
        if kind == "hello":
            return {
                "name": queue.name,
                "engine": backend.describe().get("engine", backend.name),
                "capabilities": dataclasses.asdict(backend.capabilities),
            }
        operation = OPERATIONS[kind]
        if operation.waits is not None:
            wait = float(arguments.get(operation.waits, 0.0))
            arguments[operation.waits] = max(0.0, min(wait, self.max_wait_s))
        return await operation.call(backend, arguments)

    def _error(self, error: str, message: str) -> tuple[int, bytes]:
        answer = {"error": {"type": error, "message": message}}
        return wire.ERROR_STATUS[error], wire.encode(answer)

    async def _lifespan(
        self,
        receive: Receive,
        send: Send,
    ) -> None:
        # Served as the whole application: connect the queues at startup, close them at exit.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for queue in self.queues.values():
                    await queue.connect()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for queue in self.queues.values():
                    await queue.disconnect()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HttpQueue(Queue):
    """A queue whose storage is reached through an :class:`HttpProxy`.

    Everything a :class:`~conveyor.queue.base.Queue` does works the same: enqueue, apply,
    wait for results, and run a :class:`~conveyor.worker.Worker` on it. What the HTTP path
    cannot do is declared in its backend's ``capabilities`` (see
    :mod:`conveyor.backends.http`).

    Args:
        url: The proxy's address, ``http://`` or ``https://``.
        name: The queue's name: the proxy must serve a queue of this name.
        dump: Serializer for stored jobs (as for ``Queue``).
        load: Deserializer matching ``dump``.
        defaults: Defaults for jobs' policy fields (as for ``Queue``).
        swept_error_message: The error recorded on a job whose worker died.
        instrumentation: Metrics and tracing hooks.
        **options: Options of :class:`~conveyor.backends.http.HttpBackend`: ``headers``
            (credentials for the proxy's auth hook), ``timeout``, ``max_wait_s``,
            ``attempts``, ``client`` (an ``httpx.AsyncClient`` of yours), or
            ``httpx.AsyncClient`` options (``verify``, ``auth``, ``transport`` ...).

    Raises:
        InvalidUrlError: For a URL that is not ``http://`` or ``https://``.
        MissingDependencyError: When httpx is not installed (``pip install "conveyor[http]"``).
    """

    backend: HttpBackend
    url_schemes: ClassVar[frozenset[str]] = frozenset({"http", "https"})

    def __init__(
        self,
        url: str | Backend,
        name: str = "default",
        *,
        dump: Dumper | None = None,
        load: Loader | None = None,
        defaults: dict[str, Any] | None = None,
        swept_error_message: str | None = None,
        instrumentation: Sequence[Any] = (),
        **options: Any,
    ) -> None:
        if isinstance(url, HttpBackend):  # Queue.from_url passes the backend it built
            backend = url
        elif isinstance(url, str) and url.split("://", 1)[0].lower() in self.url_schemes:
            backend = HttpBackend(url, name, **options)
        else:
            raise InvalidUrlError(
                f"HttpQueue needs an http:// or https:// URL, not {url!r}; use "
                "Queue.from_url for redis://, postgresql:// and sqlite:// URLs"
            )
        super().__init__(
            backend,
            name=name,
            dump=dump,
            load=load,
            defaults=defaults,
            swept_error_message=swept_error_message,
            instrumentation=instrumentation,
        )
        self.url = backend.url


__all__ = ["DEFAULT_KINDS", "PRODUCER_KINDS", "AuthHook", "HttpProxy", "HttpQueue", "ProxyRequest"]
