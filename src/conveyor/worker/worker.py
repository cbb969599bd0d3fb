"""The worker: claims jobs in batches, runs them, writes their outcomes in batches.

Its loops, each one task:

* **claim**: take as many jobs as there are free slots in one ``claim`` call; when there are
  none, wait on the backend's wake-up (a notification, not a poll interval).
* **leases**: every ``timers["abort"]`` seconds renew the leases of all running jobs in one
  call; the answer names jobs that were aborted meanwhile, which are cancelled.
* **sweep**: every ``timers["sweep"]`` seconds recover jobs whose worker died (their lease
  expired) and delete expired finished jobs.
* **stats**: every ``timers["stats"]`` seconds publish this worker's record.
* **cron**: every ``timers["schedule"]`` seconds enqueue cron jobs that are about to be due.

A job whose worker is killed is recovered within ``lease_s + timers["sweep"]`` seconds (by
default 15 + 5) by any live worker of the queue; a job whose worker lives is never
recovered, however long it runs, because its lease keeps being renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import tzinfo
from typing import Any

from conveyor.backends.base import Transition
from conveyor.errors import ConfigurationError, UnknownFunctionError
from conveyor.job import Job, Status, apply_defaults, now_ms
from conveyor.observability.logs import LogSink
from conveyor.observability.retention import DEFAULT_RETENTION_S, with_retention
from conveyor.queue import Queue
from conveyor.types import TimersDict
from conveyor.worker.executor import CancelReason, Hook, Outcome, call_hooks, run_attempt
from conveyor.worker.functions import normalize_functions, normalize_hooks
from conveyor.worker.scheduler import CronScheduler
from conveyor.worker.writer import TransitionWriter

logger = logging.getLogger("conveyor.worker")

DEFAULT_TIMERS: dict[str, float] = {
    "schedule": 1,
    "stats": 10,
    "sweep": 5,
    "abort": 1,
    "logs": 2,
}


class Worker:
    """Runs the jobs of one queue.

    Args:
        queue: The queue to work on.
        functions: Task functions: callables, ``(name, callable)`` pairs, task handles,
            or a :class:`conveyor.tasks.Registry` (whose cron jobs are added too).
        id: This worker's id; host name, pid and a random suffix by default.
        concurrency: How many jobs run at once.
        cron_jobs: :class:`conveyor.cron.CronJob` definitions.
        cron_tz: The time zone of cron expressions (a cron job's own ``tz`` wins).
        startup: Hook(s) called with ``ctx`` before the first job.
        shutdown: Hook(s) called with ``ctx`` after the last job.
        before_process: Hook(s) called with ``ctx`` before each job.
        after_process: Hook(s) called with ``ctx`` after each job (with ``ctx["exception"]``).
        timers: Seconds between runs of ``schedule`` (cron), ``stats``, ``sweep``,
            ``abort`` (lease renewal and abort checks) and ``logs`` (writing the captured
            lines of running jobs).
        dequeue_timeout: Seconds an idle claim loop waits between checks (0: one second).
        burst: Stop when the queue has no job left to claim.
        max_burst_jobs: In burst mode, stop after this many jobs.
        shutdown_grace_period_s: On stop, seconds running jobs get to finish before they
            are cancelled and re-queued.
        cancellation_hard_deadline_s: Seconds a cancelled job gets to unwind.
        metadata: Extra data published in the worker's record.
        defaults: Defaults for job policy fields (``timeout``, ``retries`` ...) that neither
            the job nor the queue set.
        lease_s: Seconds a claimed job's lease lasts without renewal.
        retention_s: Seconds run records and their logs are kept; a daily cron job
            (``purge_run_history``) deletes older ones. None keeps them forever.
        capture_logs: Attach every log record emitted while a job runs to its run record.
        log_level: The lowest level captured.
        poll_interval: Ignored; wake-ups come from the backend. Accepted for SAQ settings.
    """

    def __init__(
        self,
        queue: Queue,
        functions: Iterable[Any],
        *,
        id: str | None = None,
        concurrency: int = 10,
        cron_jobs: Iterable[Any] | None = None,
        cron_tz: tzinfo | str | None = None,
        startup: Hook | Iterable[Hook] | None = None,
        shutdown: Hook | Iterable[Hook] | None = None,
        before_process: Hook | Iterable[Hook] | None = None,
        after_process: Hook | Iterable[Hook] | None = None,
        timers: TimersDict | Mapping[str, float] | None = None,
        dequeue_timeout: float = 0,
        burst: bool = False,
        max_burst_jobs: int | None = None,
        shutdown_grace_period_s: float | None = 10.0,
        cancellation_hard_deadline_s: float = 1.0,
        metadata: dict[str, Any] | None = None,
        defaults: dict[str, Any] | None = None,
        lease_s: float = 15.0,
        retention_s: float | None = DEFAULT_RETENTION_S,
        capture_logs: bool = True,
        log_level: int = logging.INFO,
        poll_interval: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        unknown_timers = set(timers or {}) - set(DEFAULT_TIMERS)
        if unknown_timers:
            raise ConfigurationError(
                f"unknown timers {sorted(unknown_timers)}; use {sorted(DEFAULT_TIMERS)}"
            )
        self.queue = queue
        self.id = id or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.functions, self.cron_jobs = normalize_functions(
            functions, with_retention(cron_jobs or (), retention_s)
        )
        self.concurrency = concurrency
        self.startup = normalize_hooks(startup)
        self.shutdown = normalize_hooks(shutdown)
        self.before_process = normalize_hooks(before_process)
        self.after_process = normalize_hooks(after_process)
        given: Mapping[str, Any] = timers or {}
        self.timers: dict[str, float] = {**DEFAULT_TIMERS, **given}
        self.dequeue_timeout = dequeue_timeout
        self.burst = burst
        self.max_burst_jobs = max_burst_jobs
        self.shutdown_grace_period_s = shutdown_grace_period_s or 0.0
        self.cancellation_hard_deadline_s = cancellation_hard_deadline_s
        self.metadata = metadata or {}
        self.defaults = dict(defaults or {})
        apply_defaults(Job("probe"), self.defaults, getattr)  # validates the names
        self.lease_s = lease_s
        self.logs = (
            LogSink(queue.dump, level=log_level, plain_json=queue.uses_default_serializer)
            if capture_logs
            else None
        )
        self.context: dict[str, Any] = {"worker": self, "queue": queue}
        self.scheduler = CronScheduler(queue, self.cron_jobs, cron_tz, self.timers["schedule"])
        self.stats = {"complete": 0, "failed": 0, "retried": 0, "aborted": 0}
        self._running: dict[str, _Running] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._claim_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._kick = asyncio.Event()
        self._writer: TransitionWriter | None = None
        self._processed = 0
        self._started_at = 0.0
        self._connected_here = False
        self.idle = False

    def __repr__(self) -> str:
        return f"Worker<id={self.id!r}, queue={self.queue.name!r}>"

    # Lifecycle

    async def start(self) -> None:
        """Run until :meth:`stop` is called (or, in burst mode, until the queue is empty)."""
        self._stopped.clear()
        if not self.queue._connected:
            await self.queue.connect()
            self._connected_here = True
        self._started_at = time.time()
        self._writer = TransitionWriter(self.queue.backend, self._after_write, logs=self.logs)
        self._writer.start()
        if self.logs is not None:
            self.logs.install()
        await call_hooks(self.startup, self.context)
        if self._stopping:  # stop() was called while the startup hooks ran
            await self._stopped.wait()
            return
        logger.info("worker %s started on queue %r", self.id, self.queue.name)
        self._tasks = [
            asyncio.create_task(self._every("abort", self._renew_leases)),
            asyncio.create_task(self._every("sweep", self._sweep)),
            asyncio.create_task(self._every("stats", self._publish)),
            asyncio.create_task(self._every("logs", self._flush_logs)),
        ]
        if self.cron_jobs:
            self._tasks.append(asyncio.create_task(self._every("schedule", self.scheduler.tick)))
        self._claim_task = asyncio.create_task(self._claim_loop())
        try:
            await self._stopped.wait()
        finally:
            if not self._stopping:
                await self.stop()

    async def stop(self) -> None:
        """Stop gracefully: take no new job, let running jobs finish within the grace
        period, cancel and re-queue the rest, write everything, run the shutdown hooks."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        if self._claim_task is not None:
            self._claim_task.cancel()
            await asyncio.gather(self._claim_task, return_exceptions=True)
        await self._drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._writer is not None:
            await self._writer.close()
        if self.logs is not None:
            self.logs.uninstall()
        with contextlib.suppress(Exception):
            await self.queue.backend.delete_worker(self.id)
        try:
            await call_hooks(self.shutdown, self.context)
        finally:
            if self._connected_here:
                await self.queue.disconnect()
            logger.info("worker %s stopped", self.id)
            self._stopped.set()

    async def _drain(self) -> None:
        running = [r.task for r in self._running.values()]
        if running and self.shutdown_grace_period_s > 0:
            await asyncio.wait(running, timeout=self.shutdown_grace_period_s)
        for entry in list(self._running.values()):
            entry.cancel(CancelReason.SHUTDOWN)
        running = [r.task for r in self._running.values()]
        if running:
            await asyncio.wait(running, timeout=self.cancellation_hard_deadline_s)

    async def _every(self, timer: str, action: Callable[[], Any]) -> None:
        interval = self.timers[timer]
        while True:
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "worker %s: %s failed; trying again in %ss", self.id, timer, interval
                )
            await asyncio.sleep(interval)

    # Claiming

    def _after_write(self, batch: list[Transition]) -> None:
        self._kick.set()

    async def _claim_loop(self) -> None:
        idle_wait = self.dequeue_timeout or 1.0
        backoff = 0.05
        while not self._stopping:
            free = self.concurrency - len(self._running)
            if self.max_burst_jobs is not None:
                free = min(free, self.max_burst_jobs - self._processed)
                if free <= 0 and not self._running:
                    break
            if free <= 0:
                self._kick.clear()
                await self._kick.wait()
                continue
            self._kick.clear()
            try:
                rows = await self.queue.backend.claim(self.id, free, self.lease_s, time.time())
            except Exception:
                logger.exception("worker %s: claiming jobs failed; retrying", self.id)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            for row in rows:
                job = self.queue.deserialize(row)
                if job is not None:
                    self._launch(job)
            if rows:
                continue
            if self.burst and not self._running and not (self._writer and self._writer.pending):
                break
            await self._wait_for_work(idle_wait)
        if not self._stopping:
            # Burst mode ran out of work: wait for running jobs, then stop.
            await asyncio.gather(*(r.task for r in self._running.values()), return_exceptions=True)
            self._stopped.set()

    async def _wait_for_work(self, timeout: float) -> None:
        self.idle = True
        waiter = asyncio.ensure_future(self.queue.backend.wait_for_work(timeout))
        kicked = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait({waiter, kicked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (waiter, kicked):
                if not future.done():
                    future.cancel()
            await asyncio.gather(waiter, kicked, return_exceptions=True)
            self.idle = False

    def _launch(self, job: Job) -> None:
        self._processed += 1
        task = asyncio.create_task(self._process(job), name=f"conveyor-job-{job.key}")
        self._running[job.key] = _Running(job, task)

    # Running

    async def _process(self, job: Job) -> None:
        apply_defaults(job, self.defaults, getattr)
        ctx = {**self.context, "job": job, "exception": None}
        run_id = job.meta.get("run_id")
        capture = self.logs.start_run(str(run_id)) if self.logs and run_id else None
        fn = self.functions.get(job.function)
        outcome: Outcome
        try:
            with contextlib.ExitStack() as stack:
                for hook in self.queue.instrumentation:
                    stack.enter_context(hook.run(job))
                await call_hooks(self.before_process, ctx)
                outcome = await run_attempt(
                    fn, ctx, job, lambda: UnknownFunctionError(job.function, self.functions)
                )
        except asyncio.CancelledError:
            entry = self._running.get(job.key)
            reason = entry.reason if entry else CancelReason.SHUTDOWN
            outcome = Outcome(ok=False, cancelled=reason or CancelReason.SHUTDOWN)
        except Exception as exc:  # a before_process hook failed
            ctx["exception"] = exc
            outcome = Outcome(
                ok=False,
                error=f"before_process hook failed: {exc!r}",
                traceback=self.queue.format_traceback(exc),
            )
        entry = self._running.get(job.key)
        if entry is not None:
            entry.finishing = True  # too late to cancel: the outcome is decided
        try:
            transition = await self._transition(job, outcome)
            run_status = transition.run.status if transition.run else transition.status
            for hook in self.queue.instrumentation:
                hook.finished(job, run_status)
            with contextlib.suppress(Exception):
                await call_hooks(self.after_process, ctx)
            if capture is not None and self.logs is not None:
                self.logs.end_run(capture)
                capture = None
            assert self._writer is not None
            self._writer.submit(transition)
        finally:
            if capture is not None and self.logs is not None:
                self.logs.end_run(capture)
            self._running.pop(job.key, None)
            self._kick.set()

    async def _transition(self, job: Job, outcome: Outcome) -> Transition:
        queue = self.queue
        if outcome.ok:
            self.stats["complete"] += 1
            return queue.transition(job, Status.COMPLETE, result=outcome.result)
        if outcome.cancelled == CancelReason.ABORT:
            self.stats["aborted"] += 1
            stored = await queue.job(job.key)
            reason = stored.error if stored and stored.error else "aborted"
            return queue.transition(job, Status.ABORTED, error=reason)
        if outcome.cancelled == CancelReason.SHUTDOWN:
            # Not the job's fault: run it again elsewhere, at once.
            self.stats["retried"] += 1
            return queue.transition(job, Status.QUEUED, error="worker shut down", delay=0)
        error = outcome.error
        if outcome.cancelled == CancelReason.HEARTBEAT:
            error = f"no heartbeat within {job.heartbeat}s"
        if outcome.retry_allowed and job.retryable:
            self.stats["retried"] += 1
            return queue.transition(job, Status.QUEUED, error=error, traceback=outcome.traceback)
        self.stats["failed"] += 1
        return queue.transition(job, Status.FAILED, error=error, traceback=outcome.traceback)

    # Periodic work

    async def _renew_leases(self) -> None:
        if not self._running:
            return
        now = time.time()
        cancel = await self.queue.backend.renew(self.id, list(self._running), self.lease_s, now)
        for key in cancel:
            entry = self._running.get(key)
            if entry is not None:
                entry.cancel(CancelReason.ABORT)
        for entry in list(self._running.values()):
            job = entry.job
            if job.heartbeat and job.touched and now_ms() - job.touched > job.heartbeat * 1000:
                entry.cancel(CancelReason.HEARTBEAT)

    async def _flush_logs(self) -> None:
        if self._writer is not None:
            self._writer.kick()

    async def _sweep(self) -> None:
        recovered = await self.queue.sweep(lock=int(self.lease_s), worker_id=self.id)
        if recovered:
            logger.warning("recovered %d jobs whose worker died: %s", len(recovered), recovered)

    async def _publish(self) -> None:
        info = {
            "id": self.id,
            "queue": self.queue.name,
            "concurrency": self.concurrency,
            "started": self._started_at,
            "updated": time.time(),
            "running": list(self._running),
            "stats": dict(self.stats),
            "functions": sorted(self.functions),
            "metadata": self.metadata,
        }
        ttl = max(self.timers["stats"] * 3, 5.0)
        await self.queue.backend.put_worker(self.id, self.queue.dump(info), ttl)


class _Running:
    """A running job, its task, and why the worker cancelled it (if it did)."""

    __slots__ = ("finishing", "job", "reason", "task")

    def __init__(self, job: Job, task: asyncio.Task[None]) -> None:
        self.job = job
        self.task = task
        self.reason: CancelReason | None = None
        self.finishing = False

    def cancel(self, reason: CancelReason) -> None:
        if self.reason is None and not self.finishing:
            self.reason = reason
            self.task.cancel()
