"""Instrumentation hooks: how metrics and tracing observe jobs without the core knowing them.

A queue holds a list of :class:`Instrumentation` objects (``Queue(instrumentation=[...])``);
the queue calls them around enqueue, the worker around each run. The base class does nothing,
so an implementation overrides only what it needs. With no instrumentation the cost is one
empty loop per event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.job import Job


class Instrumentation:
    """Callbacks around a job's life; every method is optional."""

    def before_enqueue(self, job: Job) -> None:
        """Called before a job is serialized and stored; may add to ``job.meta``."""

    def enqueued(self, job: Job) -> None:
        """Called after a job was stored."""

    @contextlib.contextmanager
    def run(self, job: Job) -> Iterator[None]:
        """Wraps one attempt of ``job`` (its hooks and function) on the worker."""
        yield

    def finished(self, job: Job, run_status: str) -> None:
        """Called when an attempt ended: ``complete``, ``failed``, ``aborted`` or ``retried``."""
