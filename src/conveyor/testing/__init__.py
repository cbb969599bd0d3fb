"""Test support: the backend conformance suite, fixtures and helpers for users' tests."""

from conveyor.testing.helpers import wait_until

__all__ = ["wait_until"]
