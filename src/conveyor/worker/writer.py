"""Write-behind for finished jobs: many transitions, one round trip.

Jobs finish one at a time, but their writes (and their captured log lines) travel
together: while one ``finish`` call is in flight, the next transitions accumulate, and the
next call carries all of them (group commit). Under load every round trip carries many
jobs; when idle a job's write leaves at once.

A failed write is retried with backoff. One row the backend cannot store never holds back
the others: a failed write of many rows is split in halves until the rows that fail are
alone, and the others are written meanwhile. A transition that fails alone is retried, after
the others, until it is stored or its lease is lost (:meth:`TransitionWriter.discard`); a log
line that fails alone while other writes succeed is dropped, counted in
:attr:`TransitionWriter.dropped_lines` and logged.

A backend that can store log lines in the same step as the transitions
(:class:`~conveyor.backends.base.FinishesWithLogs`) gets both in one call, the lines as
the rows the capture made; any other gets them as :class:`~conveyor.backends.base.LogLine`
through ``append_logs`` and then ``finish``, so that a run's lines are stored no later
than its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from conveyor.backends.base import Backend, FinishesWithLogs, LogLine, LogRow, Transition
from conveyor.observability.logs import LogSink

logger = logging.getLogger("conveyor.worker")

_ALL = 1 << 62

#: Called after each batch that was written, with whether each transition was applied.
OnWritten = Callable[[list[Transition], list[bool]], None]


class TransitionWriter:
    """Batches :class:`Transition` writes to a backend.

    Args:
        backend: Where to write.
        on_written: Called after each written batch with what the backend applied (the
            worker claims again, since a finished job may have freed its group, and lets go
            of the leases of the jobs written).
        max_batch: The most transitions one call carries.
        logs: Captured log lines to write before each batch of transitions.
    """

    def __init__(
        self,
        backend: Backend,
        on_written: OnWritten | None = None,
        max_batch: int = 500,
        logs: LogSink | None = None,
    ) -> None:
        self._backend = backend
        self._together = backend if isinstance(backend, FinishesWithLogs) else None
        self._logs = logs
        self._on_written = on_written
        self._max_batch = max_batch
        self._limit = max_batch  # smaller while isolating a row the backend refuses
        self._lines_apart = False  # lines go in their own writes while isolating
        self._line_limit = _ALL
        self._pending: list[Transition] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failed_alone: set[int] = set()  # ids of transitions that failed alone
        self._succeeded = True  # a write went through since isolating began
        #: Log lines dropped because the backend refused them alone (see the module's notes).
        self.dropped_lines = 0

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

    def discard(self, keys: Collection[str]) -> None:
        """Drop the pending transitions of ``keys`` unwritten: their lease is lost.

        A transition already in flight is not called back; the backend refuses it.
        """
        self._pending = [t for t in self._pending if t.key not in keys]

    @property
    def pending(self) -> int:
        """Transitions not yet written."""
        return len(self._pending)

    def pending_keys(self) -> set[str]:
        """The keys of the transitions not yet written."""
        return {t.key for t in self._pending}

    def _has_work(self) -> bool:
        return bool(self._pending) or (self._logs is not None and self._logs.pending > 0)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is written, or ``timeout`` seconds.

        Returns:
            Whether everything was written.
        """
        if self._task is None:
            self.start()
        assert self._task is not None
        if self._task.done():
            return not self._has_work()  # cancelled (the loop is closing)
        idle = asyncio.ensure_future(self._idle.wait())
        try:
            await asyncio.wait(
                {idle, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            idle.cancel()
        return self._idle.is_set()

    async def close(self, timeout: float | None = None) -> list[Transition]:
        """Write what is pending within ``timeout`` seconds (None: however long), then stop.

        Returns:
            The transitions that could not be written in time (the backend refused or did
            not answer): their jobs stay active until their leases expire and another worker
            recovers them.
        """
        await self.flush(timeout)
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            if not self._idle.is_set():
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        left, self._pending = self._pending, []
        return left

    async def _run(self) -> None:
        delay = 0.05
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._has_work():
                progressed = await self._write_some()
                if progressed:
                    delay = 0.05
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            self._idle.set()
            if self._closing:
                return

    async def _write_some(self) -> bool:
        """One write; False when it failed and there is nothing else to try first."""
        pending = self._pending
        if self._failed_alone:  # transitions refused alone wait behind the others
            pending = [t for t in pending if id(t) not in self._failed_alone]
        batch = pending[: self._limit]
        lines: list[LogRow] = []
        if self._logs is not None and (not self._lines_apart or not batch):
            lines = self._logs.take()
            if self._lines_apart and len(lines) > self._line_limit:
                self._logs.requeue(lines[self._line_limit :])
                lines = lines[: self._line_limit]
        if not batch and not lines:
            batch = self._pending[:1]  # only refused transitions are left: try one again
        try:
            applied = await self._write(batch, lines)
        except Exception as exc:
            return self._after_failure(batch, lines, exc)
        self._succeeded = True
        written = {id(t) for t in batch}
        self._pending = [t for t in self._pending if id(t) not in written]
        self._failed_alone -= written
        if not self._failed_alone:
            self._limit = self._max_batch
        if lines and not batch:
            self._line_limit = _ALL
            self._lines_apart = bool(self._logs and self._logs.pending)
        if batch and self._on_written is not None:
            self._on_written(batch, applied)
        return True

    async def _write(self, batch: list[Transition], lines: list[LogRow]) -> list[bool]:
        if lines and batch and self._together is not None:
            return await self._together.finish_with_logs(batch, lines)
        if lines:
            await self._backend.append_logs([LogLine(*row) for row in lines])
        return await self._backend.finish(batch) if batch else []

    def _after_failure(self, batch: list[Transition], lines: list[LogRow], exc: Exception) -> bool:
        """Decide the next write after a failed one; False: back off before it."""
        if lines:
            assert self._logs is not None
            if len(lines) == 1 and not batch and self._lines_apart and self._succeeded:
                # Alone, refused while other writes went through: this line is the problem.
                self.dropped_lines += 1
                logger.error(
                    "a log line of run %s could not be stored and was dropped: %r", lines[0][0], exc
                )
                return True
            self._logs.requeue(lines)
            if not self._lines_apart:
                # Next: the transitions without the lines, then the lines in ever smaller
                # writes, to find the row the backend refuses while the rest is written.
                self._lines_apart, self._succeeded = True, False
                logger.warning("writing finished jobs and log lines failed: %r", exc)
            self._line_limit = max(1, len(lines) // 2)
            return bool(batch) or len(lines) > 1
        if len(batch) > 1:
            self._limit = max(1, len(batch) // 2)
            self._succeeded = False
            logger.warning(
                "writing %d finished jobs failed (%r); trying them in smaller batches",
                len(batch),
                exc,
            )
            return True
        [transition] = batch
        logger.error("writing the outcome of job %r failed; retrying: %r", transition.key, exc)
        self._failed_alone.add(id(transition))
        # Go on at once while other transitions or lines may be written.
        others = any(id(t) not in self._failed_alone for t in self._pending)
        return others or bool(self._lines_apart and self._logs and self._logs.pending)
