"""Shared test configuration: the conformance fixtures for every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.testing.backends import KINDS
from conveyor.testing.fixtures import backend_url_for, make_queue  # noqa: F401


@pytest.fixture(params=KINDS)
def conveyor_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An isolated queue URL for each backend in turn."""
    return backend_url_for(str(request.param), tmp_path)
