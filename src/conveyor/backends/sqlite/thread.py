"""One thread that owns one ``sqlite3`` connection and runs whole operations on it.

An operation is a plain function of the connection, typically a complete transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``). Submitting it costs one hop to the thread and one hop
back, whatever the number of statements it runs: that is the whole point, since a hop costs
far more than a statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

_Item = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class DatabaseThread:
    """A daemon thread running submitted operations one at a time, in order.

    The connection is opened on the thread by the first operation and closed when the
    thread stops, so it is only ever touched by that thread.

    Args:
        opener: Opens the connection.
        name: The thread's name, for debuggers and thread dumps.
    """

    def __init__(self, opener: Callable[[], sqlite3.Connection], name: str) -> None:
        self._opener = opener
        self._inbox: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    async def call(self, operation: Operation[T]) -> T:
        """Run ``operation(connection)`` on the thread and return its result.

        If the caller is cancelled, the operation still runs to its end (a transaction is
        never cut in half); its result is dropped.

        Raises:
            RuntimeError: When the thread has been stopped.
            Exception: Whatever the operation raised.
        """
        if not self._thread.is_alive():
            raise RuntimeError("the database thread has stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._inbox.put((operation, future, loop))
        return await future

    async def stop(self) -> None:
        """Finish the operations already submitted, close the connection and end the thread."""
        self.stop_soon()
        await asyncio.to_thread(self._thread.join)

    def stop_soon(self) -> None:
        """Like :meth:`stop`, without waiting (for a finalizer: the owner was collected)."""
        self._inbox.put(None)

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while (item := self._inbox.get()) is not None:
                operation, future, loop = item
                try:
                    if conn is None:
                        conn = self._opener()
                    result = operation(conn)
                except BaseException as exc:
                    _deliver(loop, future, None, exc)
                else:
                    _deliver(loop, future, result, None)
        finally:
            if conn is not None:
                conn.close()


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():  # the caller was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    # RuntimeError: the caller's loop is closed, so nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)
