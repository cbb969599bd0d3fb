"""Shared test configuration: the conformance fixtures for every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.testing.backends import KINDS
from conveyor.testing.fixtures import backend_url_for, make_queue, pgbouncer  # noqa: F401
from conveyor.testing.pgbouncer import PgBouncer


@pytest.fixture(params=KINDS)
def conveyor_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An isolated queue URL for each backend in turn."""
    if request.param == "pgbouncer":  # PostgreSQL through a PgBouncer of the session's
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.queue_url()
    return backend_url_for(str(request.param), tmp_path)
