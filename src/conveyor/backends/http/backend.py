"""The HTTP backend: every operation is a request to an :class:`~conveyor.queue.http.HttpProxy`.

The proxy, mounted in the user's web application, runs each operation on its own queue's
backend (SQLite, Redis, PostgreSQL) and answers with the result. Records travel with their
fencing tokens (see :mod:`conveyor.backends.http.wire`), so the backend behind the proxy
checks ownership in the same atomic step as for a local caller: a worker that reaches its
queue over HTTP holds its leases under the same rules.

What the HTTP path cannot offer is declared in :attr:`HttpBackend.capabilities`: no
enqueue inside the caller's database transaction, no separate run store, no detection of
a dead worker before its lease ends (the proxy, not the worker, holds the connection to
the store, so a killed worker's jobs come back when their lease expires).

Blocking waits are bounded: a ``wait_for_work`` or ``wait_for_finish`` holds one request
for at most ``max_wait_s`` seconds (the proxy caps it too), and returns early, which the
protocol allows (a wake-up may be spurious; the caller reads again).

Retries: a request whose reply was lost (connection closed or reset, timeout, a 502, 503
or 504 from a gateway or from the proxy's backend) is sent again, with a bounded
exponential backoff, only for operations that may run twice (see
:data:`~conveyor.backends.http.wire.OPERATIONS`). Any request is sent again when it
provably never left (the connection could not be opened). Every other failure raises
:class:`~conveyor.errors.BackendError`, and the caller decides, as with any backend.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from conveyor.backends.base import (
    Capabilities,
    JobRow,
    Lease,
    LogLine,
    NewJob,
    Payload,
    Renewal,
    RunEnd,
    RunFilter,
    RunRecord,
    Transition,
)
from conveyor.backends.http import wire
from conveyor.errors import (
    AccessDeniedError,
    BackendError,
    ConfigurationError,
    MissingDependencyError,
)

if TYPE_CHECKING:
    import httpx

#: Seconds one blocking wait may hold a request, by default.
DEFAULT_MAX_WAIT_S = 10.0
#: Seconds a request may take (beyond its wait), by default.
DEFAULT_TIMEOUT_S = 30.0
#: Sends of a request that may be sent again, by default (the first one included).
DEFAULT_ATTEMPTS = 4
#: The first pause between two sends; it doubles up to :data:`MAX_BACKOFF_S`.
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0
#: Seconds an idle pooled connection is kept: below the 5 s after which uvicorn and most
#: servers close idle connections, so that a request is not sent on a connection the server
#: is closing (which would lose a request that may not be sent twice).
KEEPALIVE_S = 2.0
#: Statuses that mean "not handled, or the proxied backend failed": worth another send.
_TRANSIENT_STATUSES = frozenset({502, 503, 504})


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise MissingDependencyError("httpx", "http", "the HTTP queue (http://)") from None
    return httpx


def redacted(url: str) -> str:
    """``url`` without its password, for messages and displays."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


class HttpBackend:
    """A backend whose storage is another process's queue, reached through an HTTP proxy.

    Args:
        url: The proxy's address (``http://`` or ``https://``); requests are POSTed to it
            as it is, query string included.
        queue_name: The queue: the proxy must serve a queue of this name.
        headers: Headers sent with every request (for the application's auth hook, for
            instance ``{"Authorization": "Bearer ..."}``).
        timeout: Seconds one request may take, beyond its wait.
        max_wait_s: Seconds one blocking wait may hold a request.
        attempts: Sends of a request that may be sent twice, the first one included.
        client: An ``httpx.AsyncClient`` of the caller's, used as it is (its base URL,
            headers, transport, TLS settings); the backend does not close it.
        **client_options: Passed to ``httpx.AsyncClient`` when the backend makes its own
            (``verify``, ``cert``, ``auth``, ``transport`` ...).

    Raises:
        MissingDependencyError: When httpx is not installed (``pip install "conveyor[http]"``).
    """

    name = "http"

    def __init__(
        self,
        url: str,
        queue_name: str = "default",
        *,
        headers: dict[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        client: httpx.AsyncClient | None = None,
        **client_options: Any,
    ) -> None:
        _httpx()
        if attempts < 1:
            raise ValueError(f"attempts must be 1 or more, got {attempts}")
        self.url = url
        self.queue_name = queue_name
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.max_wait_s = max_wait_s
        self.attempts = attempts
        # Until the proxy says what its backend can do (at connect): what HTTP never can.
        self.capabilities = Capabilities(
            cross_process=True, durable=True, transactional_enqueue=False, run_store=False
        )
        self.proxied: dict[str, Any] = {}
        self._own_client = client is None
        self._client_options = client_options
        self._client = client

    @classmethod
    def from_url(cls, url: str, queue_name: str, **options: Any) -> HttpBackend:
        """A backend for ``http://`` or ``https://`` ``url`` (see the class for options)."""
        return cls(url, queue_name, **options)

    def __repr__(self) -> str:
        return f"HttpBackend<{redacted(self.url)}, queue={self.queue_name!r}>"

    # Lifecycle

    async def connect(self) -> None:
        """Open the HTTP client and ask the proxy about its queue. Idempotent.

        Raises:
            ConfigurationError: When the proxy serves no queue of this name.
            AccessDeniedError: When the proxy's auth hook refuses the call.
            BackendError: When the proxy cannot be reached.
        """
        if self._client is None:
            httpx = _httpx()
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S), **self._client_options
            )
        if self.proxied:
            return
        hello = await self._call("hello")
        proxied = hello["capabilities"]
        self.capabilities = Capabilities(
            cross_process=True,  # every client of the proxy shares its queue
            durable=bool(proxied["durable"]),
            transactional_enqueue=False,
            run_store=False,
            lazy_enqueue=False,
        )
        self.proxied = {"engine": hello["engine"], "capabilities": proxied}

    async def disconnect(self) -> None:
        """Close the HTTP client (unless it was the caller's). Idempotent."""
        self.proxied = {}
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # The request

    async def _call(self, kind: str, **arguments: Any) -> Any:
        """Send one operation and return its result, sending it again only where allowed."""
        if self._client is None:
            await self.connect()
        assert self._client is not None
        httpx = _httpx()
        retry = kind == "hello" or wire.OPERATIONS[kind].retry
        body = wire.encode({"kind": kind, "queue": self.queue_name, **arguments})
        wait = float(arguments.get("timeout", 0.0)) if kind.startswith("wait_for") else 0.0
        timeout = httpx.Timeout(self.timeout + wait, connect=min(self.timeout, 10.0))
        headers = {"content-type": "application/json", **self.headers}
        backoff = FIRST_BACKOFF_S
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                response = await self._client.post(
                    self.url, content=body, headers=headers, timeout=timeout
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Never sent: safe to send again, whatever the operation.
                if last:
                    raise self._unreachable(kind, exc) from exc
            except httpx.TransportError as exc:
                if not retry or last:
                    raise self._unreachable(kind, exc) from exc
            else:
                if response.status_code in _TRANSIENT_STATUSES and retry and not last:
                    pass
                else:
                    return self._answer(kind, response)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _unreachable(self, kind: str, exc: Exception) -> BackendError:
        what = type(exc).__name__
        return BackendError(
            self.name,
            f"{kind} failed: the proxy at {redacted(self.url)} could not be reached or did not "
            f"answer ({what}: {exc}); check that the application serving it is up",
            exc,
        )

    def _answer(self, kind: str, response: httpx.Response) -> Any:
        try:
            answer = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer = None
        where = redacted(self.url)
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            status = response.status_code
            if status in (401, 403):
                raise AccessDeniedError(where, status, kind)
            if status >= 500:
                raise BackendError(
                    self.name,
                    f"{kind}: {where} answered {status}: the application serving the proxy, "
                    "or a gateway in front of it, failed",
                )
            raise BackendError(
                self.name,
                f"{kind}: {where} answered {status} without a Conveyor answer; is an "
                "HttpProxy mounted at that address?",
            )
        if "error" not in answer:
            return answer["result"]
        error = answer["error"]
        kind_of, message = error.get("type"), error.get("message", "")
        if kind_of in ("unauthorized", "forbidden"):
            raise AccessDeniedError(where, response.status_code, kind, message)
        if kind_of in ("not_served", "unknown_queue", "bad_request"):
            raise ConfigurationError(f"the proxy at {where} refused {kind}: {message}")
        raise BackendError(self.name, f"{kind} failed behind the proxy at {where}: {message}")

    # Operations

    async def enqueue(self, jobs: Sequence[NewJob]) -> list[bool]:
        """See :meth:`conveyor.backends.base.Backend.enqueue` (never sent twice)."""
        jobs = list(jobs)
        if not jobs:
            return []
        result: list[bool] = await self._call("enqueue", jobs=jobs)
        return result

    async def claim(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """See :meth:`conveyor.backends.base.Backend.claim` (never sent twice). ``vouch`` is
        not sent: the proxy never vouches for a remote worker (its lease ends by expiry)."""
        rows = await self._call("claim", worker_id=worker_id, limit=limit, lease_s=lease_s, now=now)
        return wire.records(JobRow, rows)

    async def wait_for_work(self, timeout: float) -> None:
        """See :meth:`conveyor.backends.base.Backend.wait_for_work`; waits at most
        ``max_wait_s`` per call."""
        if timeout > 0:
            await self._call("wait_for_work", timeout=min(timeout, self.max_wait_s))

    async def renew(
        self,
        worker_id: str,
        leases: Sequence[Lease],
        lease_s: float,
        now: float,
        *,
        vouch: bool = True,
    ) -> Renewal:
        """See :meth:`conveyor.backends.base.Backend.renew` (``vouch`` as for :meth:`claim`)."""
        if not leases:
            return Renewal()
        found = await self._call(
            "renew", worker_id=worker_id, leases=list(leases), lease_s=lease_s, now=now
        )
        return Renewal(aborting=list(found["aborting"]), lost=list(found["lost"]))

    async def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        """See :meth:`conveyor.backends.base.Backend.finish` (never sent twice)."""
        if not transitions:
            return []
        result: list[bool] = await self._call("finish", transitions=list(transitions))
        return result

    async def update(self, key: str, payload: Payload, token: str | None = None) -> bool:
        """See :meth:`conveyor.backends.base.Backend.update`."""
        return bool(await self._call("update", key=key, payload=payload, token=token))

    async def abort(self, key: str, payload: Payload, now: float) -> str | None:
        """See :meth:`conveyor.backends.base.Backend.abort` (never sent twice)."""
        before: str | None = await self._call("abort", key=key, payload=payload, now=now)
        return before

    async def recover(
        self, worker_id: str, limit: int, lease_s: float, now: float, *, vouch: bool = True
    ) -> list[JobRow]:
        """See :meth:`conveyor.backends.base.Backend.recover` (never sent twice; ``vouch`` as
        for :meth:`claim`)."""
        rows = await self._call(
            "recover", worker_id=worker_id, limit=limit, lease_s=lease_s, now=now
        )
        return wire.records(JobRow, rows)

    async def get(self, keys: Sequence[str]) -> list[JobRow | None]:
        """See :meth:`conveyor.backends.base.Backend.get`."""
        if not keys:
            return []
        rows = await self._call("get", keys=list(keys))
        return [None if row is None else wire.record(JobRow, row) for row in rows]

    async def list_jobs(
        self, statuses: Sequence[str] | None, offset: int, limit: int
    ) -> list[JobRow]:
        """See :meth:`conveyor.backends.base.Backend.list_jobs`."""
        wanted = None if statuses is None else list(statuses)
        rows = await self._call("list_jobs", statuses=wanted, offset=offset, limit=limit)
        return wire.records(JobRow, rows)

    async def count(self, statuses: Sequence[str]) -> dict[str, int]:
        """See :meth:`conveyor.backends.base.Backend.count`."""
        counts = await self._call("count", statuses=list(statuses))
        return {str(k): int(v) for k, v in counts.items()}

    async def wait_for_finish(self, keys: Sequence[str], timeout: float) -> None:
        """See :meth:`conveyor.backends.base.Backend.wait_for_finish`; waits at most
        ``max_wait_s`` per call."""
        if timeout > 0 and keys:
            await self._call(
                "wait_for_finish", keys=list(keys), timeout=min(timeout, self.max_wait_s)
            )

    async def expire(self, now: float, limit: int) -> int:
        """See :meth:`conveyor.backends.base.Backend.expire`."""
        return int(await self._call("expire", now=now, limit=limit))

    async def put_worker(self, worker_id: str, info: Payload, ttl_s: float) -> None:
        """See :meth:`conveyor.backends.base.Backend.put_worker`."""
        await self._call("put_worker", worker_id=worker_id, info=info, ttl_s=ttl_s)

    async def delete_worker(self, worker_id: str) -> None:
        """See :meth:`conveyor.backends.base.Backend.delete_worker`."""
        await self._call("delete_worker", worker_id=worker_id)

    async def workers(self) -> dict[str, Payload]:
        """See :meth:`conveyor.backends.base.Backend.workers`."""
        found = await self._call("workers")
        return {str(k): wire.unpack_payload(v) for k, v in found.items()}

    async def record_runs(self, starts: Sequence[RunRecord], ends: Sequence[RunEnd]) -> None:
        """See :meth:`conveyor.backends.base.Backend.record_runs`."""
        if starts or ends:
            await self._call("record_runs", starts=list(starts), ends=list(ends))

    async def list_runs(
        self, filters: RunFilter, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        """See :meth:`conveyor.backends.base.Backend.list_runs`."""
        runs, total = await self._call("list_runs", filters=filters, offset=offset, limit=limit)
        return wire.records(RunRecord, runs), int(total)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """See :meth:`conveyor.backends.base.Backend.get_run`."""
        found = await self._call("get_run", run_id=run_id)
        return None if found is None else wire.record(RunRecord, found)

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        """See :meth:`conveyor.backends.base.Backend.append_logs` (never sent twice)."""
        if lines:
            await self._call("append_logs", lines=list(lines))

    async def read_logs(self, run_id: str, after_seq: int, limit: int) -> list[LogLine]:
        """See :meth:`conveyor.backends.base.Backend.read_logs`."""
        lines = await self._call("read_logs", run_id=run_id, after_seq=after_seq, limit=limit)
        return wire.records(LogLine, lines)

    async def purge_runs(self, before_ms: int, limit: int) -> int:
        """See :meth:`conveyor.backends.base.Backend.purge_runs`."""
        return int(await self._call("purge_runs", before_ms=before_ms, limit=limit))

    async def drop(self) -> None:
        """See :meth:`conveyor.backends.base.Backend.drop`; a proxy refuses it unless built
        with ``drop`` among its ``kinds``."""
        await self._call("drop")

    def describe(self) -> dict[str, Any]:
        """The proxy's address (without password) and the engine behind it."""
        return {"engine": "http", "url": redacted(self.url), "proxied": self.proxied.get("engine")}
