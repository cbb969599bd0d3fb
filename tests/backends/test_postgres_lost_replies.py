"""Statements whose connection is lost on the way: a claim or a recovery is never run twice.

The connection is lost by a small proxy between the backend and the server
(:class:`LosingProxy`), on the one statement that carries a marker (a worker id, once the
backend holds that worker's presence lock, whose statement carries it too), either
after the server answered it (it committed; the reply is dropped) or before the server got
it (it never ran). A stand-in for the lead's ``conveyor.testing.faults.FaultProxy`` and its
``drop_replies_once()``, which had not landed when these tests were written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from backends import test_postgres
from backends.test_postgres import _job
from conveyor.backends.base import Lease, Renewal, Transition
from conveyor.backends.postgres import PostgresBackend
from conveyor.testing.backends import postgres_url

url = test_postgres.url
schema = test_postgres.schema
admin = test_postgres.admin
make = test_postgres.make

#: The ReadyForQuery message's type: the server's last word on a statement, after its commit.
READY = ord("Z")


class LosingProxy:
    """A TCP proxy to PostgreSQL that loses one connection on a chosen statement.

    Armed with :meth:`lose_reply` or :meth:`lose_request` and a marker (bytes that the
    statement's messages contain, such as a parameter's value), it closes the first
    connection whose client sends the marker: after the server has answered the statement
    (the whole reply, up to ReadyForQuery, is dropped), or before forwarding it. The
    connections must not use TLS (``sslmode=disable``), so that the server's messages can
    be read.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self.lost = asyncio.Event()
        self._marker = b""
        self._after_reply = True
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    def lose_reply(self, marker: bytes) -> None:
        """Lose the connection that sends ``marker`` once its statement was answered."""
        self._marker, self._after_reply = marker, True
        self.lost.clear()

    def lose_request(self, marker: bytes) -> None:
        """Lose the connection that sends ``marker`` before the server gets it."""
        self._marker, self._after_reply = marker, False
        self.lost.clear()

    def url(self, original: str) -> str:
        """``original`` pointing at the proxy, without TLS or GSS encryption."""
        parts = urlsplit(original)
        netloc = f"{parts.username}@127.0.0.1:{self.listen_port}"
        query = "&".join(filter(None, [parts.query, "sslmode=disable", "gssencmode=disable"]))
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return
        doomed = asyncio.Event()  # this connection sent the marker
        try:
            await asyncio.gather(
                self._requests(reader, up_writer, doomed),
                self._replies(up_reader, writer, doomed),
            )
        except (OSError, ConnectionError, asyncio.IncompleteReadError, _Lost):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
            self._links.discard(task)

    async def _requests(
        self, reader: asyncio.StreamReader, up: asyncio.StreamWriter, doomed: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if self._marker and self._marker in data and not doomed.is_set():
                self._marker = b""
                doomed.set()
                if not self._after_reply:
                    self.lost.set()
                    raise _Lost
            up.write(data)
            await up.drain()
        raise _Lost

    async def _replies(
        self, up: asyncio.StreamReader, writer: asyncio.StreamWriter, doomed: asyncio.Event
    ) -> None:
        pending = b""  # the reply of the doomed statement, read message by message
        while data := await up.read(65536):
            if not doomed.is_set():
                writer.write(data)
                await writer.drain()
                continue
            pending += data
            while len(pending) >= 5:
                size = 1 + int.from_bytes(pending[1:5], "big")
                if len(pending) < size:
                    break
                if pending[0] == READY:  # answered and committed: nobody hears it
                    self.lost.set()
                    raise _Lost
                pending = pending[size:]
        raise _Lost


class _Lost(Exception):
    """Ends a proxied connection."""


@pytest.fixture
async def proxy() -> AsyncIterator[LosingProxy]:
    parts = urlsplit(postgres_url())
    losing = LosingProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await losing.start()
    yield losing
    await losing.close()


@contextlib.asynccontextmanager
async def through(proxy: LosingProxy, url: str) -> AsyncIterator[PostgresBackend]:
    """A backend whose connections all go through the proxy."""
    backend = PostgresBackend.from_url(proxy.url(url), "main")
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.disconnect()


async def _jobs_of(admin: Any, schema: str, status: str) -> dict[str, tuple[Any, ...]]:
    """The jobs with ``status``: key -> (worker_id, token, run_id)."""
    cur = await admin.execute(
        f'SELECT key, worker_id, token, run_id FROM "{schema}".jobs WHERE status = %s',
        (status,),
    )
    return {row[0]: tuple(row[1:]) for row in await cur.fetchall()}


async def _runs(admin: Any, schema: str) -> int:
    cur = await admin.execute(f'SELECT count(*) FROM "{schema}".runs')
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def test_a_claim_whose_reply_was_lost_returns_the_jobs_it_took(
    url: str, admin: Any, schema: str, proxy: LosingProxy
) -> None:
    async with through(proxy, url) as backend:
        assert await backend.claim("claimer-1", 2, 30, time.time()) == []  # its presence lock
        await backend.enqueue([_job(f"j{i}") for i in range(6)])
        proxy.lose_reply(b"claimer-1")
        rows = await backend.claim("claimer-1", 2, 30, time.time())
        assert proxy.lost.is_set()
        # What the committed claim took, and nothing more: every active job is one the
        # worker knows, under the token and run it was given.
        active = await _jobs_of(admin, schema, "active")
        assert {
            row.key: ("claimer-1", int(row.token or 0), int(row.run_id or 0)) for row in rows
        } == active
        assert [row.key for row in rows] == ["j0", "j1"]
        assert await _runs(admin, schema) == 2
        # The worker works with them as usual.
        leases = [Lease(row.key, row.token or "") for row in rows]
        assert await backend.renew("claimer-1", leases, 30, time.time()) == Renewal()
        done = [Transition(r.key, "{}", "complete", token=r.token) for r in rows]
        assert await backend.finish(done) == [True, True]
        assert [r.key for r in await backend.claim("claimer-1", 10, 30, time.time())] == [
            "j2",
            "j3",
            "j4",
            "j5",
        ]


async def test_a_claim_lost_on_its_way_claims_on_the_retry(
    url: str, admin: Any, schema: str, proxy: LosingProxy
) -> None:
    async with through(proxy, url) as backend:
        assert await backend.claim("claimer-2", 2, 30, time.time()) == []  # its presence lock
        await backend.enqueue([_job(f"j{i}") for i in range(4)])
        proxy.lose_request(b"claimer-2")
        rows = await backend.claim("claimer-2", 2, 30, time.time())
        assert proxy.lost.is_set()
        assert [row.key for row in rows] == ["j0", "j1"]
        assert set(await _jobs_of(admin, schema, "active")) == {"j0", "j1"}
        assert await _runs(admin, schema) == 2


async def test_a_recovery_whose_reply_was_lost_returns_the_jobs_it_took(
    url: str, admin: Any, schema: str, proxy: LosingProxy
) -> None:
    async with through(proxy, url) as backend:
        await backend.enqueue([_job(f"j{i}") for i in range(5)])
        now = time.time()
        assert await backend.recover("sweeper-1", 2, 30, now) == []  # its presence lock
        await backend.claim("dead", 5, 0.01, now)
        proxy.lose_reply(b"sweeper-1")
        rows = await backend.recover("sweeper-1", 2, 30, now + 1)
        assert proxy.lost.is_set()
        active = await _jobs_of(admin, schema, "active")
        taken = {key: info for key, info in active.items() if info[0] == "sweeper-1"}
        assert {row.key: ("sweeper-1", int(row.token or 0)) for row in rows} == {
            key: info[:2] for key, info in taken.items()
        }
        assert len(rows) == 2
        # The others are left to the next sweep, still under the dead worker.
        assert sorted(info[0] for info in active.values()) == ["dead"] * 3 + ["sweeper-1"] * 2


async def test_a_recovery_lost_on_its_way_recovers_on_the_retry(
    url: str, admin: Any, schema: str, proxy: LosingProxy
) -> None:
    async with through(proxy, url) as backend:
        await backend.enqueue([_job(f"j{i}") for i in range(3)])
        now = time.time()
        assert await backend.recover("sweeper-2", 2, 30, now) == []  # its presence lock
        await backend.claim("dead", 3, 0.01, now)
        proxy.lose_request(b"sweeper-2")
        rows = await backend.recover("sweeper-2", 2, 30, now + 1)
        assert proxy.lost.is_set() and len(rows) == 2
        active = await _jobs_of(admin, schema, "active")
        assert sorted(info[0] for info in active.values()) == ["dead", "sweeper-2", "sweeper-2"]


async def test_a_retried_renewal_and_finish_do_no_harm(
    url: str, admin: Any, schema: str, proxy: LosingProxy
) -> None:
    async with through(proxy, url) as backend:
        await backend.enqueue([_job("renewed-key")])
        [row] = await backend.claim("w", 1, 30, time.time())
        # renew is retried after its reply is lost: the lease is still held.
        proxy.lose_reply(b"renewed-key")
        lease = Lease("renewed-key", row.token or "")
        assert await backend.renew("w", [lease], 60, time.time()) == Renewal()
        assert proxy.lost.is_set()
        # finish is retried too: its first run applied it, so the second is refused (and
        # says so), and nothing is written twice.
        proxy.lose_reply(b"finished-once")
        done = Transition("renewed-key", '{"r":"finished-once"}', "complete", token=row.token)
        assert await backend.finish([done]) == [False]
        assert proxy.lost.is_set()
        [stored] = await backend.get(["renewed-key"])
        assert stored is not None and stored.status == "complete"
