"""Typing names that SAQ users import from ``saq.types``, under the same names.

``Context`` is a plain ``dict[str, Any]``, not a ``TypedDict``: tasks and hooks store their
own resources in it (``ctx["db"] = pool``), and under ``mypy --strict`` a ``TypedDict``
refuses keys it does not declare. The keys Conveyor itself sets are listed in
:data:`CONTEXT_KEYS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypedDict

if TYPE_CHECKING:
    from conveyor.cron import CronJob
    from conveyor.queue import Queue

#: What a task function, a hook and ``before_process``/``after_process`` receive first.
Context: TypeAlias = dict[str, Any]

#: The keys Conveyor sets in a context: ``worker``, ``queue``, ``job`` (while a job runs)
#: and ``exception`` (in ``after_process``, when the attempt failed).
CONTEXT_KEYS = ("worker", "queue", "job", "exception")

#: A task function: ``fn(ctx, **kwargs)``, async or sync.
Function: TypeAlias = Callable[..., Any]


class ReceivesContext(Protocol):
    """A hook: ``startup``, ``shutdown``, ``before_process`` or ``after_process``."""

    def __call__(self, ctx: Context, /) -> Awaitable[Any] | Any:
        """Called with the worker's context."""


class TimersDict(TypedDict, total=False):
    """Seconds between the worker's periodic duties; any key may be left out."""

    schedule: float
    stats: float
    sweep: float
    abort: float
    logs: float


class SettingsDict(TypedDict, total=False):
    """A worker's settings, as SAQ's ``saq.types.SettingsDict`` (every key optional)."""

    queue: Queue
    functions: Iterable[Any]
    concurrency: int
    cron_jobs: Iterable[CronJob]
    cron_tz: tzinfo | str
    startup: ReceivesContext | Iterable[ReceivesContext]
    shutdown: ReceivesContext | Iterable[ReceivesContext]
    before_process: ReceivesContext | Iterable[ReceivesContext]
    after_process: ReceivesContext | Iterable[ReceivesContext]
    timers: TimersDict
    dequeue_timeout: float
    burst: bool
    max_burst_jobs: int
    shutdown_grace_period_s: float
    cancellation_hard_deadline_s: float
    metadata: dict[str, Any]
    id: str
    defaults: dict[str, Any]
    lease_s: float
    retention_s: float | None
    capture_logs: bool
    log_level: int


__all__ = [
    "CONTEXT_KEYS",
    "Context",
    "Function",
    "ReceivesContext",
    "SettingsDict",
    "TimersDict",
]
