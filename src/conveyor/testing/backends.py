"""Where the conformance suite finds each backend under test.

Each backend under test is described by a URL. A test gets a fresh, isolated URL (its own
SQLite file, Redis key prefix or PostgreSQL schema), so that worker subprocesses can reach
the same queue, and cleans up only what it created.

Servers: Redis at ``CONVEYOR_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``), PostgreSQL
at ``CONVEYOR_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``), a Redis
Cluster at ``CONVEYOR_TEST_REDIS_CLUSTER`` (a ``redis+cluster://`` URL; the
``conveyor_redis_cluster`` fixture starts one of its own and sets it when it is unset). When
a server is unreachable its tests are skipped with a reason, except with ``CI=true``, where
they fail.

``pgbouncer`` is PostgreSQL through a PgBouncer in transaction mode that the tests start
(:mod:`conveyor.testing.pgbouncer`; its URL comes from the ``pgbouncer`` fixture, not from
:func:`isolated_url`): it needs the ``pgbouncer`` executable besides the server.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlparse

from conveyor.testing import pgbouncer

#: The backends under test. ``http-X`` is backend ``X`` behind an
#: :class:`~conveyor.queue.http.HttpProxy`, reached by an HTTP queue (see
#: :class:`conveyor.testing.http_server.ProxyServer`).
KINDS = (
    "memory",
    "sqlite",
    "redis",
    "redis-cluster",
    "postgres",
    "pgbouncer",
    "http-sqlite",
    "http-redis",
    "http-postgres",
)
#: The environment variable naming the Redis Cluster under test.
REDIS_CLUSTER_VARIABLE = "CONVEYOR_TEST_REDIS_CLUSTER"


def proxied_kind(kind: str) -> str | None:
    """The backend behind the proxy for an ``http-X`` kind (``X``), None for the others."""
    return kind.removeprefix("http-") if kind.startswith("http-") else None


def redis_url() -> str:
    """The Redis server used by tests."""
    return os.environ.get("CONVEYOR_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_cluster_url() -> str | None:
    """The Redis Cluster used by tests (``redis+cluster://``), if any."""
    return os.environ.get(REDIS_CLUSTER_VARIABLE) or None


def postgres_url() -> str:
    """The PostgreSQL server used by tests."""
    return os.environ.get("CONVEYOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def reachable(url: str) -> bool:
    """Whether a TCP connection to the URL's host and port succeeds."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), 1):
            return True
    except OSError:
        return False


def unreachable_reason(kind: str) -> str | None:
    """Why ``kind`` cannot be tested here, or None when it can."""
    kind = proxied_kind(kind) or kind
    if kind == "redis" and not reachable(redis_url()):
        return f"Redis is not reachable at {redis_url()}"
    if kind in ("postgres", "pgbouncer") and not reachable(postgres_url()):
        return f"PostgreSQL is not reachable at {postgres_url()}"
    if kind == "redis-cluster":
        cluster = redis_cluster_url()
        if cluster is None:
            return f"no Redis Cluster: {REDIS_CLUSTER_VARIABLE} is unset"
        first = cluster.split("://", 1)[1].split(",", 1)[0].rsplit("@", 1)[-1]
        if not reachable(f"redis://{first}"):
            return f"the Redis Cluster is not reachable at {first}"
    if kind == "pgbouncer" and pgbouncer.binary() is None:
        return "pgbouncer is not installed (apt-get install -y pgbouncer)"
    return None


def isolated_url(kind: str, tmp_path: Path) -> str:
    """A URL for ``kind`` that no other test shares.

    Args:
        kind: One of :data:`KINDS` but the ``http-X`` ones, whose URLs a
            :class:`~conveyor.testing.http_server.ProxyServer` gives
            (:func:`conveyor.testing.fixtures.backend_url_for` with ``proxy=``).
        tmp_path: A directory owned by the test (for SQLite files).
    """
    token = uuid.uuid4().hex[:10]
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'conveyor-{token}.db'}"
    if kind == "redis":
        return f"{redis_url()}?prefix=test-{token}"
    if kind == "redis-cluster":
        return f"{redis_cluster_url()}?prefix=test-{token}"
    if kind == "postgres":
        return f"{postgres_url()}?schema=test_{token}"
    if kind == "pgbouncer":
        raise ValueError("a pgbouncer URL needs a running PgBouncer: use the pgbouncer fixture")
    raise ValueError(f"unknown backend kind {kind!r}; use one of {KINDS}")
