"""Write-behind for finished jobs: many transitions, one round trip.

Jobs finish one at a time, but their writes (and their captured log lines) travel
together: while one ``finish`` call is in flight, the next transitions accumulate, and the
next call carries all of them (group commit). Under load every round trip carries many
jobs; when idle a job's write leaves at once. A failed write is retried with backoff and
never dropped.

A backend that can store log lines in the same step as the transitions
(:class:`~conveyor.backends.base.FinishesWithLogs`) gets both in one call, the lines as
the rows the capture made; any other gets them as :class:`~conveyor.backends.base.LogLine`
through ``append_logs`` and then ``finish``, so that a run's lines are stored no later
than its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from conveyor.backends.base import Backend, FinishesWithLogs, LogLine, Transition
from conveyor.observability.logs import LogSink

logger = logging.getLogger("conveyor.worker")


class TransitionWriter:
    """Batches :class:`Transition` writes to a backend.

    Args:
        backend: Where to write.
        on_written: Called after each successful batch (the worker uses it to claim again,
            since a finished job may have freed its group).
        max_batch: The most transitions one call carries.
        logs: Captured log lines to write before each batch of transitions.
    """

    def __init__(
        self,
        backend: Backend,
        on_written: Callable[[list[Transition]], None] | None = None,
        max_batch: int = 500,
        logs: LogSink | None = None,
    ) -> None:
        self._backend = backend
        self._together = backend if isinstance(backend, FinishesWithLogs) else None
        self._logs = logs
        self._on_written = on_written
        self._max_batch = max_batch
        self._pending: list[Transition] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the flushing task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="conveyor-writer")

    def submit(self, transition: Transition) -> None:
        """Queue a transition for the next batch."""
        self._pending.append(transition)
        self._idle.clear()
        self._wakeup.set()

    def kick(self) -> None:
        """Write buffered log lines now (a running job's lines, for live tailing)."""
        if self._logs is not None and self._logs.pending:
            self._idle.clear()
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Transitions not yet written."""
        return len(self._pending)

    def _has_work(self) -> bool:
        return bool(self._pending) or (self._logs is not None and self._logs.pending > 0)

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        if self._task is None:
            self.start()
        assert self._task is not None
        if self._task.done():
            return  # cancelled (the loop is closing): nothing will write any more
        idle = asyncio.ensure_future(self._idle.wait())
        try:
            await asyncio.wait({idle, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()

    async def close(self) -> None:
        """Write what is pending, then stop."""
        await self.flush()
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        delay = 0.05
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._has_work():
                batch = self._pending[: self._max_batch]
                lines = self._logs.take() if self._logs is not None else []
                try:
                    if lines and batch and self._together is not None:
                        await self._together.finish_with_logs(batch, lines)
                    else:
                        if lines:
                            await self._backend.append_logs([LogLine(*row) for row in lines])
                            lines = []  # stored: a retry of finish must not repeat them
                        if batch:
                            await self._backend.finish(batch)
                except Exception:
                    logger.exception("writing %d finished jobs failed; retrying", len(batch))
                    if lines and self._logs is not None:
                        self._logs.requeue(lines)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.05
                del self._pending[: len(batch)]
                if batch and self._on_written is not None:
                    self._on_written(batch)
            self._idle.set()
            if self._closing:
                return
