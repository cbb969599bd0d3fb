"""Shared test configuration: the conformance fixtures for every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.testing.backends import KINDS
from conveyor.testing.fixtures import (  # noqa: F401
    backend_url_for,
    conveyor_redis_cluster,
    make_queue,
    pgbouncer,
)
from conveyor.testing.pgbouncer import PgBouncer


@pytest.fixture(params=KINDS)
def conveyor_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An isolated queue URL for each backend in turn (the Redis Cluster is started once
    per session and pytest-xdist worker)."""
    if request.param == "pgbouncer":  # PostgreSQL through a PgBouncer of the session's
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.queue_url()
    if request.param == "redis-cluster":
        request.getfixturevalue("conveyor_redis_cluster")
    return backend_url_for(str(request.param), tmp_path)
