"""The worker's threads for sync task functions, and the attempts that outlive their stop.

A Python thread cannot be stopped. When a sync attempt times out, is aborted or is cancelled
while its thread still runs, :meth:`ThreadPool.run` does not return until the thread has
ended: the worker writes the attempt's outcome (and so lets its retry start) only then.
Meanwhile the job keeps its lease, which the worker renews, and its slot. Such a thread is
*hung*: it is listed in :attr:`ThreadPool.hung` until it ends.

The pool has one thread per slot of the worker, started on demand, so an attempt never waits
for a thread (its timeout never runs before the function starts), and a hung thread keeps
the slot it holds: however many threads hang, the other slots still have theirs. The
threads are daemon threads: a hung one does not keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("conveyor.worker")


@dataclasses.dataclass(frozen=True, slots=True)
class HungThread:
    """A sync attempt that was stopped (timeout, abort, shutdown...) while its thread ran on.

    Attributes:
        key: The job's key.
        function: The task's name.
        since: Epoch seconds when the attempt was stopped.
        thread: The thread's name.
    """

    key: str
    function: str
    since: float
    thread: str

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (for the worker's published record)."""
        return dataclasses.asdict(self)


class _Work:
    """One call handed to a thread, and the event-loop future its outcome settles."""

    __slots__ = (
        "call",
        "done",
        "ended",
        "function",
        "hung",
        "key",
        "loop",
        "skip",
        "started",
        "thread",
    )

    def __init__(
        self, call: Callable[[], Any], loop: asyncio.AbstractEventLoop, key: str, function: str
    ) -> None:
        self.call = call
        self.loop = loop
        self.ended: asyncio.Future[Any] = loop.create_future()
        self.key = key
        self.function = function
        self.thread = ""
        # Under the pool's lock: the thread took the call, the call was stopped before it
        # started (so it never does), the thread is done with it.
        self.started = False
        self.skip = False
        self.done = False
        self.hung = False

    def settle(self, result: Any, error: BaseException | None) -> None:
        """Hand the outcome to the event loop (from the thread)."""
        # The loop may be closed by now (the worker stopped and its process went on).
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.ended, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # abandoned at the pool's close
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ThreadPool:
    """Threads for sync attempts: one per slot, daemon threads, hung ones listed.

    Args:
        size: The number of slots (the worker's ``concurrency``). Threads are started on
            demand up to it; should more calls run at once, more threads are started
            rather than letting a call wait.
        name: The prefix of the threads' names.
        on_hung: Called on the event loop when a stopped attempt's thread is still running.
    """

    def __init__(
        self,
        size: int,
        name: str = "conveyor-sync",
        on_hung: Callable[[HungThread], None] | None = None,
    ) -> None:
        self.size = size
        self._name = name
        self._on_hung = on_hung
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._numbers = itertools.count(1)
        self._hung: dict[int, HungThread] = {}
        self._active: set[_Work] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"ThreadPool<size={self.size}, threads={self._threads}, hung={len(self._hung)}>"

    @property
    def hung(self) -> list[HungThread]:
        """Stopped attempts whose thread still runs, oldest first."""
        with self._lock:
            return sorted(self._hung.values(), key=lambda h: h.since)

    @property
    def threads(self) -> int:
        """How many threads the pool has started (and not yet ended)."""
        return self._threads

    async def run(
        self,
        key: str,
        function: str,
        call: Callable[[], Any],
        *,
        on_cancel: Callable[[], None] | None = None,
        hang_after: float = 0.0,
    ) -> Any:
        """Run ``call()`` in a thread and return its result (or raise its exception).

        When the awaiting task is cancelled (a timeout, an abort, a shutdown), this does not
        return until the thread has ended: the cancellation is raised then. The thread is
        listed as hung when it is still running ``hang_after`` seconds after the first
        cancellation.

        Args:
            key: The job's key.
            function: The task's name.
            call: What the thread runs.
            on_cancel: Called once on the first cancellation, to make the call end (a child
                process is terminated); a thread cannot be stopped otherwise.
            hang_after: Seconds after the cancellation before the thread counts as hung.

        Raises:
            CancelledError: After the thread ended, when the task was cancelled meanwhile;
                at once when the pool was closed.
            RuntimeError: When the pool is closed.
        """
        loop = asyncio.get_running_loop()
        work = _Work(call, loop, key, function)
        self._submit(work)
        try:
            return await asyncio.shield(work.ended)
        except asyncio.CancelledError:
            if work.ended.done():
                if not work.ended.cancelled():
                    work.ended.exception()  # retrieved: the attempt was stopped anyway
                raise
            with self._lock:
                work.skip = not work.started
            if on_cancel is not None:
                on_cancel()
            await self._outlive(work, hang_after)
            raise
        finally:
            self._active.discard(work)

    def close(self) -> None:
        """Stop taking calls; idle threads end, busy ones end after their call.

        Calls still running (hung threads) are abandoned: their :meth:`run` raises
        ``CancelledError`` at once, and their threads go on until their function returns
        (they stay listed in :attr:`hung`). Call it on the event loop's thread.
        """
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._queue.put(None)
        for work in list(self._active):
            if not work.ended.done():
                work.ended.cancel()

    def _submit(self, work: _Work) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker's thread pool is closed (the worker stopped)")
            self._active.add(work)
            start = self._idle == 0
            if start:
                self._threads += 1
                number = next(self._numbers)
            else:
                self._idle -= 1
        self._queue.put(work)
        if start:
            threading.Thread(target=self._serve, name=f"{self._name}-{number}", daemon=True).start()

    def _serve(self) -> None:
        current = threading.current_thread().name
        try:
            while True:
                work = self._queue.get()
                if work is None:
                    return
                work.thread = current
                result: Any = None
                error: BaseException | None = None
                with self._lock:
                    work.started = not work.skip
                if work.started:
                    try:
                        result = work.call()
                    except BaseException as exc:  # handed to the awaiting task
                        error = exc
                with self._lock:
                    work.done = True
                    self._hung.pop(id(work), None)
                    closed = self._closed
                    if not closed:
                        # Idle before the loop learns of the outcome: the slot this frees
                        # finds the thread free.
                        self._idle += 1
                work.settle(result, error)
                del work, result, error
                if closed:
                    return
        finally:
            with self._lock:
                self._threads -= 1

    async def _outlive(self, work: _Work, hang_after: float) -> None:
        """Wait until the thread of a stopped attempt ends, whatever cancels the wait."""
        loop = asyncio.get_running_loop()
        stopped_at = time.time()
        marker = loop.call_later(hang_after, self._mark_hung, work, stopped_at)
        try:
            while not work.ended.done():
                try:
                    await asyncio.wait({work.ended})
                except asyncio.CancelledError:
                    continue  # already stopping: the cancellation is raised when it ends
        finally:
            marker.cancel()
        if not work.ended.cancelled():
            work.ended.exception()  # retrieved: the attempt's outcome is its stop
            if work.hung:
                hung_for = time.time() - stopped_at
                logger.warning(
                    "job %r (%s): its thread ended %.1fs after the attempt was stopped; its "
                    "outcome is written now",
                    work.key,
                    work.function,
                    hung_for,
                )

    def _mark_hung(self, work: _Work, since: float) -> None:
        with self._lock:
            if work.done or work.skip:  # ended, or stopped before it started
                return
            record = HungThread(work.key, work.function, since, work.thread)
            self._hung[id(work)] = record
            work.hung = True
        if self._on_hung is not None:
            self._on_hung(record)


__all__ = ["HungThread", "ThreadPool"]
