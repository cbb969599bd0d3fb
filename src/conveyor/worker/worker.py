"""The worker: claims jobs in batches, runs them, writes their outcomes in batches.

Its loops, each one task:

* **claim**: take as many jobs as there are free slots in one ``claim`` call; when there are
  none, wait on the backend's wake-up (a notification, not a poll interval).
* **leases**: every ``timers["abort"]`` seconds renew, in one call, the leases of the jobs
  this worker holds: running jobs, and finished jobs whose outcome the writer has not
  stored yet. The answer names jobs that were aborted meanwhile, which are cancelled and
  finished as aborted, and leases that are lost (another worker recovered the job after
  the lease expired: this worker's event loop or its backend stalled for longer than
  ``lease_s``), whose jobs are cancelled at once and about which nothing more is written.
* **sweep**: every ``timers["sweep"]`` seconds recover jobs whose worker died (their lease
  expired, or the backend knows their worker is gone) and delete expired finished jobs.
  After a failed call to the backend a worker does not sweep for ``lease_s`` seconds plus
  as long as the failures lasted: when a backend comes back from an outage every lease has
  expired, and the owners, still alive, get that long to reconnect and renew before
  anybody takes their jobs.
* **stats**: every ``timers["stats"]`` seconds publish this worker's record.
* **cron**: every ``timers["schedule"]`` seconds enqueue cron jobs that are about to be due.

Sync (``def``) task functions run in the worker's own threads, one per slot. A thread
cannot be stopped: an attempt that times out, is aborted or is cancelled while its thread
runs keeps its lease and its slot until the thread ends, and only then is its outcome
written (and its retry allowed to start). Such threads are listed in :attr:`Worker.hung`
and in the worker's published record. Tasks registered with ``process=True`` run in a child
process instead, which the worker terminates. See :mod:`conveyor.worker.threads` and
:mod:`conveyor.worker.processes`.

A job whose worker is killed is recovered within ``lease_s + timers["sweep"]`` seconds (by
default 15 + 5) by any live worker of the queue, sooner where the backend can tell that the
worker is gone (:class:`~conveyor.backends.base.DetectsDeadOwners`). A job whose worker
keeps renewing its lease is not recovered however long it runs. Every write about an
attempt carries its lease's fencing token: once a job was recovered, its earlier owner's
writes are refused by the backend.
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

from conveyor.backends.base import DetectsDeadOwners, JobRow, Lease, Transition
from conveyor.errors import ConfigurationError, UnknownFunctionError
from conveyor.job import Job, Status, apply_defaults, now_ms
from conveyor.observability.logs import LogSink
from conveyor.observability.retention import DEFAULT_RETENTION_S, with_retention
from conveyor.queue import Queue
from conveyor.types import TimersDict
from conveyor.worker.executor import CancelReason, Hook, Outcome, call_hooks, run_attempt
from conveyor.worker.functions import normalize_functions, normalize_hooks
from conveyor.worker.scheduler import CronScheduler
from conveyor.worker.threads import HungThread, ThreadPool
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
        concurrency: How many jobs run at once; the worker starts up to as many threads
            for sync task functions. 0 makes a worker that runs no job, only the cron
            schedule, the sweeps and its record (as in SAQ).
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
        cancellation_hard_deadline_s: Seconds a cancelled job gets to unwind. A
            process-run task's child gets half of it between SIGTERM and SIGKILL.
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
        unknown_timers = set(timers or {}) - set(DEFAULT_TIMERS)
        if unknown_timers:
            raise ConfigurationError(
                f"unknown timers {sorted(unknown_timers)}; use {sorted(DEFAULT_TIMERS)}"
            )
        _check_settings(
            concurrency=concurrency,
            timers={**DEFAULT_TIMERS, **(timers or {})},
            lease_s=lease_s,
            dequeue_timeout=dequeue_timeout,
            shutdown_grace_period_s=shutdown_grace_period_s or 0.0,
            cancellation_hard_deadline_s=cancellation_hard_deadline_s,
            max_burst_jobs=max_burst_jobs,
            burst=burst,
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
        self.stats = {"complete": 0, "failed": 0, "retried": 0, "aborted": 0, "lost": 0}
        self._running: dict[str, _Running] = {}
        self._threads: ThreadPool | None = None
        self._hurry = asyncio.Event()
        # Every lease this worker holds: running jobs, and finished ones whose outcome the
        # writer has not stored yet (they keep their lease until the write lands).
        self._held: dict[str, Lease] = {}
        self._renewed_at = 0.0
        # After an outage every lease has expired, and a sweep at once would take the jobs
        # of workers that are alive and about to renew. Sweeps wait, after the last failed
        # call to the backend, a lease plus as long as the outage lasted: other workers'
        # clients reconnect with backoff, whose next attempt comes within that long.
        self._unreachable_at = -float("inf")
        self._failing_since: float | None = None
        self._last_outage = 0.0
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

    @property
    def hung(self) -> list[HungThread]:
        """Sync attempts that were stopped (timeout, abort, shutdown...) while their thread
        ran on, oldest first. Each keeps its job's lease and its slot until the thread
        ends; one left at a stop stays listed while its thread runs."""
        return self._threads.hung if self._threads is not None else []

    # Lifecycle

    async def start(self) -> None:
        """Run until :meth:`stop` is called (or, in burst mode, until the queue is empty).

        Cancelling the task that runs it stops the worker as :meth:`stop` does (running jobs
        get their grace period), and then it returns, as SAQ's does.
        """
        self._stopped.clear()
        try:
            if not self.queue._connected:
                await self.queue.connect()
                self._connected_here = True
            self._started_at = time.time()
            self._open()
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
                self._tasks.append(asyncio.create_task(self._every("schedule", self.schedule)))
            if self.concurrency > 0:
                self._claim_task = asyncio.create_task(self._claim_loop())
            await self._stopped.wait()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                # Handled: the stop below must not see the cancellation as its own (a
                # timeout inside it would otherwise end as a cancellation).
                task.uncancel()
        finally:
            if not self._stopping:
                await self.stop()

    def _open(self) -> None:
        """Start the threads for sync tasks, the outcome writer and the log capture."""
        self._threads = ThreadPool(
            self.concurrency, name=f"conveyor-sync-{self.queue.name}", on_hung=self._report_hung
        )
        self._writer = TransitionWriter(self.queue.backend, self._after_write, logs=self.logs)
        self._writer.start()
        if self.logs is not None:
            self.logs.install()

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
        if self._threads is not None:
            # Hung threads go on (daemon threads: they end with the process); their
            # attempts were re-queued by the drain, and nothing waits for them any more.
            self._threads.close()
        if self._writer is not None:
            # Leases are still renewed while the last outcomes are written. Past lease_s
            # other workers may recover the jobs anyway, so waiting longer buys nothing.
            bound = min(self.lease_s, 2.0) if self._hurry.is_set() else self.lease_s
            unwritten = await self._writer.close(bound)
            if unwritten:
                logger.error(
                    "worker %s: the outcomes of %d jobs could not be stored within %ss; they "
                    "stay active until their leases expire and another worker recovers them: "
                    "%s",
                    self.id,
                    len(unwritten),
                    bound,
                    [t.key for t in unwritten],
                )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.logs is not None:
            self.logs.uninstall()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.queue.backend.delete_worker(self.id), 2.0)
        try:
            await call_hooks(self.shutdown, self.context)
        finally:
            if self._connected_here:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.queue.disconnect(), 5.0)
            logger.info("worker %s stopped", self.id)
            self._stopped.set()

    # SAQ's worker methods, one step of the loops above each

    async def process(self) -> bool:
        """Claim one job, run it and store its outcome, as SAQ's ``Worker.process`` does.

        Waits for a job up to ``dequeue_timeout`` seconds (0: until there is one, as SAQ's
        ``dequeue``). The job runs as the worker runs every job (hooks, timeout, lease
        renewal, log capture), whether or not :meth:`start` runs; this returns once its
        outcome is stored.

        Returns:
            Whether a job was processed (False when none came in time).
        """
        if not self.queue._connected:
            await self.queue.connect()
        standalone = self._writer is None
        if standalone:
            self._open()
        renewing = None
        try:
            job = await self.queue.dequeue(
                self.dequeue_timeout, worker_id=self.id, lease_s=self.lease_s
            )
            if job is None:
                return False
            if standalone:
                renewing = asyncio.create_task(self._every("abort", self._renew_leases))
            self._launch(job)
            entry = self._running.get(job.key)
            if entry is not None:
                try:
                    await asyncio.wait([entry.task])
                except asyncio.CancelledError:
                    # Cancelled as a stop would: the job is re-queued, then this returns.
                    entry.cancel(CancelReason.SHUTDOWN)
                    await asyncio.wait([entry.task], timeout=self.cancellation_hard_deadline_s)
                    raise
            assert self._writer is not None
            await self._writer.flush()
            return True
        finally:
            if renewing is not None:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
            if standalone:
                await self._close()

    async def _close(self) -> None:
        """Undo :meth:`_open` once what is pending is written."""
        if self._threads is not None:
            self._threads.close()
            self._threads = None
        if self._writer is not None:
            await self._writer.close(self.lease_s)
            self._writer = None
        if self.logs is not None:
            self.logs.uninstall()

    async def abort(self, abort_threshold: float = 0.0) -> None:
        """Renew this worker's leases now, and cancel the running jobs that were aborted
        (they end ``aborted``), as SAQ's ``Worker.abort`` does; the worker does it every
        ``timers["abort"]`` seconds. ``abort_threshold`` is ignored: an abort is seen
        whatever the job's age."""
        await self._renew_leases()

    async def schedule(self, lock: int = 1) -> None:
        """Enqueue the cron jobs that are due, as SAQ's ``Worker.schedule`` does (the worker
        does it every ``timers["schedule"]`` seconds). ``lock`` is ignored: each slot is
        enqueued once however many workers call this."""
        await self.scheduler.tick()

    async def worker_info(self, ttl: float = 60) -> dict[str, Any]:
        """Publish this worker's record (it expires after ``ttl`` seconds unless published
        again) and return it, as SAQ's ``Worker.worker_info`` does.

        The record has SAQ's ``queue_key``, ``metadata`` and ``stats`` (``complete``,
        ``failed``, ``retried``, ``aborted``, ``uptime`` in ms, and Conveyor's ``lost``),
        and Conveyor's ``id``, ``queue``, ``concurrency``, ``started``, ``updated``,
        ``running``, ``hung`` and ``functions``.
        """
        started = self._started_at
        info = {
            "id": self.id,
            "queue": self.queue.name,
            "queue_key": self.queue.name,
            "concurrency": self.concurrency,
            "started": started,
            "updated": time.time(),
            "running": list(self._running),
            "hung": [h.to_dict() for h in self.hung],
            "stats": {
                **self.stats,
                "uptime": int((time.time() - started) * 1000) if started else 0,
            },
            "functions": sorted(self.functions),
            "metadata": self.metadata,
        }
        await self.queue.backend.put_worker(self.id, self.queue.dump(info), float(ttl))
        return info

    def hurry(self) -> None:
        """Make a stop fast (a second SIGTERM): running jobs are cancelled and re-queued at
        once, without their grace period, and the last writes get at most 2 seconds. Jobs
        whose re-queue is not stored in time are recovered by other workers later."""
        self._hurry.set()

    async def _drain(self) -> None:
        running = [r.task for r in self._running.values()]
        if running and self.shutdown_grace_period_s > 0 and not self._hurry.is_set():
            hurry = asyncio.ensure_future(self._hurry.wait())
            finished = asyncio.ensure_future(asyncio.wait(running))
            try:
                await asyncio.wait(
                    [finished, hurry],
                    timeout=self.shutdown_grace_period_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                hurry.cancel()
                finished.cancel()  # stops waiting; the jobs themselves go on
        for entry in list(self._running.values()):
            entry.cancel(CancelReason.SHUTDOWN)
        running = [r.task for r in self._running.values()]
        if running:
            await asyncio.wait(running, timeout=self.cancellation_hard_deadline_s)
        self._release_stuck()

    def _release_stuck(self) -> None:
        """Re-queue jobs whose attempt did not unwind within the hard deadline.

        Their task may still be running (it ignores cancellation, or its thread is blocked):
        the re-queue ends this worker's lease, so that anything the attempt writes later is
        refused, and the job can run again elsewhere once this process has exited.

        A job whose sync thread is still running is re-queued to start no sooner than
        ``lease_s`` seconds later, as if this worker had died: by then this process has
        normally exited and taken the thread with it, so that the next attempt does not
        overlap this one. Only a process that goes on after its worker stopped (a worker
        embedded in an application) may still run the thread then.
        """
        hung = {h.key for h in self.hung}
        for key, entry in list(self._running.items()):
            if entry.task.done() or entry.finishing or key not in self._held:
                continue
            entry.finishing = True
            entry.released = True
            delay = self.lease_s if key in hung else 0
            logger.error(
                "worker %s: job %r did not stop within cancellation_hard_deadline_s=%ss; "
                "re-queued without its outcome%s",
                self.id,
                key,
                self.cancellation_hard_deadline_s,
                f", to start in {delay:g}s (its thread still runs)" if delay else "",
            )
            self.stats["retried"] += 1
            self.queue.count_ended(Status.QUEUED)
            transition = self.queue.transition(
                entry.job,
                Status.QUEUED,
                error="worker shut down; the attempt did not stop within the hard deadline",
                delay=delay,
            )
            assert self._writer is not None
            self._writer.submit(transition)

    async def _every(self, timer: str, action: Callable[[], Any]) -> None:
        interval = self.timers[timer]
        while True:
            started = time.monotonic()
            try:
                await action()
                if time.monotonic() - started > self.lease_s:
                    self._unreachable(since=started)  # it answered, but only after a lease
                else:
                    self._reached()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._unreachable()
                logger.exception(
                    "worker %s: %s failed; trying again in %ss", self.id, timer, interval
                )
            await asyncio.sleep(interval)

    # Claiming

    def _after_write(self, batch: list[Transition], applied: list[bool]) -> None:
        for transition, stored in zip(batch, applied, strict=True):
            lease = self._held.get(transition.key)
            if lease is not None and lease.token == transition.token:
                del self._held[transition.key]
            if not stored and transition.token is not None:
                self.stats["lost"] += 1
                logger.warning(
                    "worker %s: the outcome of job %r (%s) was not stored: its lease had "
                    "been taken over",
                    self.id,
                    transition.key,
                    transition.status,
                )
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
                rows = await self._claim(free)
            except Exception:
                self._unreachable()
                logger.exception("worker %s: claiming jobs failed; retrying", self.id)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            self._reached()
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

    async def _claim(self, limit: int) -> list[JobRow]:
        """Claim jobs; a stop arriving meanwhile does not abandon what the backend claimed.

        The claim is shielded from the stop's cancellation: the jobs it took are launched
        (and then drained like every running job) instead of being left active with no
        worker to run them.
        """
        claim = asyncio.ensure_future(
            self.queue.backend.claim(self.id, limit, self.lease_s, time.time())
        )
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            try:
                rows = await asyncio.wait_for(claim, self.lease_s)
            except Exception:
                rows = []  # unknown outcome: any job it took is recovered when its lease ends
            for row in rows:
                job = self.queue.deserialize(row)
                if job is not None:
                    self._launch(job)
            raise

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
        if job.lease_token is not None:
            self._held[job.key] = Lease(job.key, job.lease_token)
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
                assert self._threads is not None
                outcome = await run_attempt(
                    fn,
                    ctx,
                    job,
                    lambda: UnknownFunctionError(job.function, self.functions),
                    self._threads,
                    self.cancellation_hard_deadline_s / 2,
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
            if outcome.cancelled == CancelReason.LOST:
                # Another worker owns the job now: this attempt's outcome is not written.
                logger.warning(
                    "worker %s: job %r was cancelled: its lease was taken over by another "
                    "worker (this worker stalled or lost the backend for over %ss)",
                    self.id,
                    job.key,
                    self.lease_s,
                )
                self.stats["lost"] += 1
                self._held.pop(job.key, None)
                return
            if entry is not None and entry.released:
                return  # the stop re-queued it already (_release_stuck)
            lease = self._held.get(job.key)
            transition = None
            if lease is not None and job.lease_token != lease.token:
                # The task ended its attempt itself (job.finish, job.retry, or job.update
                # with a status): that write was fenced by the lease and spent its token,
                # so the worker writes nothing more about the attempt.
                del self._held[job.key]
                run_status = job.status.value
                ended = "retried" if job.status == Status.QUEUED else run_status
                if ended in self.stats:
                    self.stats[ended] += 1
            else:
                transition = await self._transition_or_failure(job, outcome)
                self.queue.count_ended(Status(transition.status))
                run_status = transition.run.status if transition.run else transition.status
            for hook in self.queue.instrumentation:
                hook.finished(job, run_status)
            with contextlib.suppress(Exception):
                await call_hooks(self.after_process, ctx)
            if capture is not None and self.logs is not None:
                self.logs.end_run(capture)
                capture = None
            assert self._writer is not None
            if transition is not None and job.key in self._held:  # not lost meanwhile
                self._writer.submit(transition)
        finally:
            if capture is not None and self.logs is not None:
                self.logs.end_run(capture)
            self._running.pop(job.key, None)
            self._kick.set()

    async def _transition_or_failure(self, job: Job, outcome: Outcome) -> Transition:
        try:
            return await self._transition(job, outcome)
        except Exception as exc:
            # The policy must always come to an outcome, or the job would wait for its
            # lease to expire and run again.
            logger.exception("worker %s: deciding the outcome of job %r failed", self.id, job.key)
            return self.queue.transition(
                job, Status.FAILED, error=f"deciding the outcome failed: {exc!r}"
            )

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
        started = time.monotonic()
        if self._renewed_at and started - self._renewed_at > self.lease_s:
            logger.warning(
                "worker %s: no lease renewed for %.1fs, longer than lease_s=%s (a blocked "
                "event loop or an unreachable backend): other workers may have recovered "
                "its jobs; the renewal says which",
                self.id,
                started - self._renewed_at,
                self.lease_s,
            )
        for key, lease in list(self._held.items()):
            entry = self._running.get(key)
            if entry is not None and entry.job.lease_token != lease.token:
                del self._held[key]  # its task ended the attempt itself (see _process)
        if not self._held:
            self._renewed_at = started
            return
        now = time.time()
        renewal = await self.queue.backend.renew(
            self.id, list(self._held.values()), self.lease_s, now
        )
        self._renewed_at = started
        if renewal.lost:
            self._lose(renewal.lost)
        for key in renewal.aborting:
            entry = self._running.get(key)
            if entry is not None:
                entry.cancel(CancelReason.ABORT)
        hung = {h.key for h in self.hung}
        for entry in list(self._running.values()):
            job = entry.job
            if job.key in hung:
                continue  # stopped already; a hung thread sends no heartbeat
            if job.heartbeat and job.touched and now_ms() - job.touched > job.heartbeat * 1000:
                entry.cancel(CancelReason.HEARTBEAT)

    def _lose(self, keys: list[str]) -> None:
        """Let go of leases another worker took over: cancel their jobs, drop their writes."""
        lost = set(keys)
        for key in lost:
            self._held.pop(key, None)
            entry = self._running.get(key)
            if entry is not None:
                entry.cancel(CancelReason.LOST, force=True)
        if self._writer is not None:
            self._writer.discard(lost)

    async def _flush_logs(self) -> None:
        if self._writer is not None:
            self._writer.kick()

    def _unreachable(self, since: float | None = None) -> None:
        self._unreachable_at = time.monotonic()
        if self._failing_since is None:
            self._failing_since = self._unreachable_at if since is None else since

    def _reached(self) -> None:
        if self._failing_since is not None:
            self._last_outage = self._unreachable_at - self._failing_since
            self._failing_since = None

    async def _sweep(self) -> None:
        if time.monotonic() - self._unreachable_at < self.lease_s + self._last_outage:
            return  # just back from an outage: owners get time to reconnect and renew first
        backend = self.queue.backend
        if isinstance(backend, DetectsDeadOwners):
            started = time.monotonic()
            ended = await backend.expire_dead_leases(time.time())
            if time.monotonic() - started > self.lease_s / 2:
                # A late answer: the backend may have been out of reach, and the owners
                # not yet back. Recover on a later sweep.
                self._unreachable(since=started)
                return
            if ended:
                logger.warning("ended %d leases whose worker is gone", ended)
        recovered = await self.queue.sweep(lock=int(self.lease_s), worker_id=self.id)
        if recovered:
            logger.warning("recovered %d jobs whose worker died: %s", len(recovered), recovered)

    def _report_hung(self, hung: HungThread) -> None:
        entry = self._running.get(hung.key)
        reason = entry.reason if entry is not None else None
        if reason is None:
            stopped = f"timed out after {entry.job.timeout}s" if entry is not None else "stopped"
        else:
            stopped = f"was cancelled ({reason.value})"
        logger.warning(
            "worker %s: job %r (%s) %s but its thread %s is still running; a thread cannot "
            "be stopped: the job keeps its lease and its slot, and its outcome (and retry) "
            "waits until the thread ends. Use @task(process=True) for a sync task that must "
            "be stoppable",
            self.id,
            hung.key,
            hung.function,
            stopped,
            hung.thread,
        )

    async def _publish(self) -> None:
        await self.worker_info(ttl=max(self.timers["stats"] * 3, 5.0))


def _check_settings(
    *,
    concurrency: int,
    timers: Mapping[str, Any],
    lease_s: float,
    dequeue_timeout: float,
    shutdown_grace_period_s: float,
    cancellation_hard_deadline_s: float,
    max_burst_jobs: int | None,
    burst: bool = False,
) -> None:
    """Refuse settings that cannot work, naming the setting and the range it takes."""

    def number(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise ConfigurationError(f"{name} must be a number, got {value!r}")
        return float(value)

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0:
        raise ConfigurationError(
            f"concurrency must be an integer of at least 0 (0: a worker that runs only cron "
            f"and sweeps), got {concurrency!r}"
        )
    if burst and concurrency == 0:
        raise ConfigurationError(
            "concurrency must be at least 1 with burst=True: a worker that runs no job "
            "would never find the queue empty"
        )
    for name, value in timers.items():
        if number(f'timers["{name}"]', value) <= 0:
            raise ConfigurationError(f'timers["{name}"] must be more than 0 seconds, got {value!r}')
    renew_every = float(timers["abort"])
    if number("lease_s", lease_s) < 2 * renew_every:
        raise ConfigurationError(
            f'lease_s must be at least twice timers["abort"] (leases are renewed every '
            f"{renew_every:g}s), so that a healthy worker never loses one: got "
            f"lease_s={lease_s!r}; use lease_s >= {2 * renew_every:g} or renew more often"
        )
    for name, value in (
        ("dequeue_timeout", dequeue_timeout),
        ("shutdown_grace_period_s", shutdown_grace_period_s),
    ):
        if number(name, value) < 0:
            raise ConfigurationError(f"{name} must be 0 or more seconds, got {value!r}")
    if number("cancellation_hard_deadline_s", cancellation_hard_deadline_s) <= 0:
        raise ConfigurationError(
            f"cancellation_hard_deadline_s must be more than 0 seconds, "
            f"got {cancellation_hard_deadline_s!r}"
        )
    if max_burst_jobs is not None and (
        isinstance(max_burst_jobs, bool)
        or not isinstance(max_burst_jobs, int)
        or max_burst_jobs < 1
    ):
        raise ConfigurationError(
            f"max_burst_jobs must be an integer of at least 1, got {max_burst_jobs!r}"
        )


class _Running:
    """A running job, its task, and why the worker cancelled it (if it did)."""

    __slots__ = ("finishing", "job", "reason", "released", "task")

    def __init__(self, job: Job, task: asyncio.Task[None]) -> None:
        self.job = job
        self.task = task
        self.reason: CancelReason | None = None
        self.finishing = False
        # Re-queued by the stop while its attempt still ran: nothing more is written.
        self.released = False

    def cancel(self, reason: CancelReason, force: bool = False) -> None:
        """Cancel the job's task, once; ``force`` overrides an earlier reason (a lost lease
        wins over an abort or a shutdown: nothing may be written for it)."""
        if force:
            self.reason = reason
            if not self.finishing:
                self.task.cancel()
        elif self.reason is None and not self.finishing:
            self.reason = reason
            self.task.cancel()
