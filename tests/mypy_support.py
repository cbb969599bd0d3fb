"""Running mypy as the project's tests do: strict, for Python 3.11, with the project's
configuration."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_mypy(paths: list[Path], cache: Path) -> tuple[str, int]:
    """mypy's report on ``paths`` (one run) and its exit status."""
    from mypy import api as mypy_api  # imported only by the tests that type-check

    stdout, stderr, status = mypy_api.run(
        [
            "--strict",
            "--python-version",
            "3.11",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(cache),
            "--config-file",
            str(REPO / "pyproject.toml"),
            *[str(path) for path in paths],
        ]
    )
    return stdout + stderr, status
