"""CONVEYOR_TEST_KINDS narrows the backends the conformance suite runs on (CI's extra
passes run the core ones)."""

from __future__ import annotations

import pytest

from conveyor.testing import backends


def test_the_kinds_under_test_can_be_narrowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backends.KINDS_VARIABLE, raising=False)
    assert backends._selected_kinds() == backends.ALL_KINDS
    monkeypatch.setenv(backends.KINDS_VARIABLE, "postgres, memory")
    assert backends._selected_kinds() == ("memory", "postgres")
    monkeypatch.setenv(backends.KINDS_VARIABLE, "memory,mongo")
    with pytest.raises(ValueError, match="mongo"):
        backends._selected_kinds()
