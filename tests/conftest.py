"""Shared test configuration: the conformance fixtures for every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.testing.backends import KINDS, proxied_kind
from conveyor.testing.fixtures import (  # noqa: F401
    backend_url_for,
    conveyor_http_proxy,
    conveyor_redis_cluster,
    make_queue,
    pgbouncer,
)
from conveyor.testing.pgbouncer import PgBouncer


@pytest.fixture(params=KINDS)
def conveyor_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An isolated queue URL for each backend in turn (``http-X``: X behind an HttpProxy; the
    Redis Cluster is started once per session and pytest-xdist worker)."""
    kind = str(request.param)
    if kind == "pgbouncer":  # PostgreSQL through a PgBouncer of the session's
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.queue_url()
    if kind == "redis-cluster":
        request.getfixturevalue("conveyor_redis_cluster")
    proxy = request.getfixturevalue("conveyor_http_proxy") if proxied_kind(kind) else None
    return backend_url_for(kind, tmp_path, proxy)
