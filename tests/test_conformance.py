"""The conformance suite, on every backend (see ``conveyor_url`` in conftest.py)."""

from conveyor.testing.conformance import *  # noqa: F403
