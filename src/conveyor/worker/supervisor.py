"""Run N worker processes and keep them running: ``conveyor SETTINGS --workers N``.

The supervisor starts each worker as a child process running the same command line. It
replaces a child that dies while it should be running, after a short backoff that doubles
with each recent death; when children keep dying (``crash_limit`` deaths within
``crash_window_s`` seconds, the sign of a broken deployment rather than a bad job) it stops
the others and gives up with a non-zero exit. On SIGTERM or SIGINT it forwards SIGTERM to
every child, which stops gracefully, waits for them, and kills with SIGKILL those still
running after ``stop_timeout`` seconds.

A child knows its supervisor through the ``CONVEYOR_SUPERVISOR_PID`` environment variable
and stops by itself when the supervisor disappears (for instance killed with SIGKILL), so
no worker is left orphaned.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence

logger = logging.getLogger("conveyor.supervisor")

#: Set in each child's environment to the supervisor's pid.
SUPERVISOR_PID_ENV = "CONVEYOR_SUPERVISOR_PID"


def describe_exit(code: int) -> str:
    """A readable exit status: ``exit code 3`` or ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Keeps ``processes`` copies of ``command`` running until told to stop.

    Args:
        command: The child's command line (program and arguments).
        processes: How many children run at once.
        stop_timeout: Seconds children get to stop after SIGTERM before SIGKILL.
        restart_delay: Seconds before replacing a dead child; doubles with each recent death.
        max_restart_delay: The cap of that delay.
        crash_limit: This many deaths within ``crash_window_s`` make the supervisor give up.
        crash_window_s: The window in which deaths count towards ``crash_limit``.
        exit_zero_is_done: A child that exits with code 0 has finished its work (burst
            mode) and is not replaced; the supervisor ends when all have finished.
        env: Extra environment variables for the children.
        cwd: The children's working directory (the supervisor's by default).
    """

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        stop_timeout: float = 30.0,
        restart_delay: float = 0.5,
        max_restart_delay: float = 5.0,
        crash_limit: int = 5,
        crash_window_s: float = 10.0,
        exit_zero_is_done: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.command = list(command)
        self.processes = processes
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self.crash_limit = crash_limit
        self.crash_window_s = crash_window_s
        self.exit_zero_is_done = exit_zero_is_done
        self.env = {**os.environ, **(env or {}), SUPERVISOR_PID_ENV: str(os.getpid())}
        self.cwd = cwd
        self.failure: str | None = None
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._deaths: collections.deque[float] = collections.deque()
        self._stopping: asyncio.Event | None = None

    @property
    def pids(self) -> list[int]:
        """The pids of the children running now, by slot."""
        return [p.pid for _, p in sorted(self._children.items()) if p.returncode is None]

    def stop(self) -> None:
        """Ask the supervisor to stop its children gracefully (safe to call repeatedly)."""
        if self._stopping is not None and not self._stopping.is_set():
            logger.info("stopping %d worker processes", len(self.pids))
            self._stopping.set()

    async def run(self) -> int:
        """Run the children until :meth:`stop`, a signal, or a crash loop.

        Returns:
            0 after a requested stop (or when every child finished, in burst mode); 1 when
            the supervisor gave up because children kept dying (see :attr:`failure`).
        """
        self._stopping = asyncio.Event()
        signals = self._install_signal_handlers()
        slots = [
            asyncio.create_task(self._keep_running(slot), name=f"conveyor-slot-{slot}")
            for slot in range(self.processes)
        ]
        stop_requested = asyncio.create_task(self._stopping.wait())
        try:
            all_finished = asyncio.ensure_future(asyncio.wait(slots))
            await asyncio.wait({all_finished, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
            self._stopping.set()
            await self._stop_children(slots)
            await all_finished
        finally:
            stop_requested.cancel()
            loop = asyncio.get_running_loop()
            for sig in signals:
                loop.remove_signal_handler(sig)
        for slot in slots:
            if slot.exception() is not None and self.failure is None:
                self.failure = f"supervising worker processes failed: {slot.exception()!r}"
        if self.failure is not None:
            logger.error("%s", self.failure)
            return 1
        return 0

    def _install_signal_handlers(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []  # only the main thread may handle signals; the caller calls stop()
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
            installed.append(sig)
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping is not None and self._stopping.is_set():
            logger.info("%s received again; still waiting for the workers to stop", sig.name)
            return
        logger.info("%s received: stopping the workers gracefully", sig.name)
        self.stop()

    async def _keep_running(self, slot: int) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                process = await self._spawn(slot)
            except OSError as exc:
                logger.error("could not start worker process %d: %s", slot + 1, exc)
                pid, code = 0, 127
            else:
                pid, code = process.pid, await process.wait()
            if self._stopping.is_set():
                return
            if code == 0 and self.exit_zero_is_done:
                logger.info("worker process %d (pid %d) finished", slot + 1, pid)
                self._children.pop(slot, None)
                return
            delay = self._record_death(slot, pid, code)
            if delay is None:
                self._stopping.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _spawn(self, slot: int) -> asyncio.subprocess.Process:
        assert self._stopping is not None
        process = await asyncio.create_subprocess_exec(*self.command, env=self.env, cwd=self.cwd)
        self._children[slot] = process
        logger.info("started worker process %d/%d (pid %d)", slot + 1, self.processes, process.pid)
        if self._stopping.is_set():
            _send(process, signal.SIGTERM)  # a stop arrived while it was starting
        return process

    def _record_death(self, slot: int, pid: int, code: int) -> float | None:
        """Count an unexpected death; the restart delay, or None to give up."""
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > self.crash_window_s:
            self._deaths.popleft()
        recent = len(self._deaths)
        if recent >= self.crash_limit:
            self.failure = (
                f"giving up: worker processes died {recent} times within "
                f"{self.crash_window_s:g}s (the last, pid {pid}, {describe_exit(code)}); "
                "run one worker without --workers to see why it fails"
            )
            return None
        delay: float = min(self.restart_delay * 2.0 ** (recent - 1), self.max_restart_delay)
        logger.error(
            "worker process %d (pid %d) died unexpectedly (%s); replacing it in %.1fs",
            slot + 1,
            pid,
            describe_exit(code),
            delay,
        )
        return delay

    async def _stop_children(self, slots: list[asyncio.Task[None]]) -> None:
        for process in list(self._children.values()):
            _send(process, signal.SIGTERM)
        _, running = await asyncio.wait(slots, timeout=self.stop_timeout)
        if running:
            logger.error(
                "worker processes %s did not stop within %gs; killing them",
                self.pids,
                self.stop_timeout,
            )
            for process in list(self._children.values()):
                _send(process, signal.SIGKILL)
            await asyncio.wait(slots)
        logger.info("all worker processes stopped")


def _send(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


__all__ = ["SUPERVISOR_PID_ENV", "Supervisor", "describe_exit"]
