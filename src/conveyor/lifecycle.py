"""Finishing policy: the single place that decides a job's next state after an attempt.

The queue and the worker call :func:`transition` to turn an outcome (complete, failed,
aborted, or queued again for a retry) into the job's new fields and a
:class:`~conveyor.backends.base.Transition` for the backend, with its run's end.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import RunEnd, Transition
from conveyor.errors import SerializationError
from conveyor.job import TERMINAL_STATUSES, Job, Status, now_ms
from conveyor.serialization import storable_text

if TYPE_CHECKING:
    from conveyor.queue import Queue


def transition(
    queue: Queue,
    job: Job,
    status: Status,
    *,
    result: Any = None,
    error: str | None = None,
    traceback: str | None = None,
    delay: float | None = None,
) -> Transition:
    """Decide a job's next state.

    Sets the job's fields (status, result, error, timestamps) and builds the
    :class:`Transition` (with its run's outcome) for the backend. A result that cannot be
    serialized fails the job with an error that says so.

    Args:
        queue: The job's queue (its serializer and name).
        job: The job; changed in place.
        status: ``QUEUED`` to retry, or a terminal status.
        result: The return value, for ``COMPLETE``.
        error: The error message.
        traceback: The formatted traceback, stored with the run.
        delay: For ``QUEUED``: seconds before the retry (the job's backoff by default).

    Returns:
        What to hand to :meth:`Backend.finish`.
    """
    now = now_ms()
    job.touched = now
    if error is not None:
        job.error = storable_text(error)
    if traceback is not None:
        traceback = storable_text(traceback)
    # Only an attempt that is running has a run to end: a job waiting for its retry keeps
    # its previous attempt's run id in meta, and that run ended already.
    running = job.lease_token is not None or job.status in (Status.ACTIVE, Status.ABORTING)
    run_id = job.meta.get("run_id") if job.meta and running else None
    if status == Status.QUEUED:
        wait = job.next_retry_delay() if delay is None else delay
        job.status = Status.QUEUED
        job.scheduled = time.time() + wait if wait > 0 else 0
        job.worker_id = None
        run_status = "retried"
    else:
        job.status = status
        job.completed = now
        job.result = result
        job.progress = 1.0 if status == Status.COMPLETE else job.progress
        run_status = status.value
    run = None
    if run_id is not None:
        run = RunEnd(
            run_id=str(run_id),
            status=run_status,
            finished_ms=now,
            detail=run_detail(queue, job, result, traceback),
            error=job.error if run_status != "complete" else None,
        )
    try:
        payload = queue.serialize(job)
    except SerializationError as exc:
        job.status, job.result = Status.FAILED, None
        job.error = storable_text(str(exc))
        if run is not None:
            run.status, run.error = "failed", job.error
            run.detail = run_detail(queue, job, None, traceback)
        payload = _serialize_salvaged(queue, job)
    ttl = int(job.ttl)
    terminal = job.status in TERMINAL_STATUSES
    return Transition(
        key=job.key,
        payload=payload,
        status=job.status.value,
        due=float(job.scheduled or 0),
        expire_at=(time.time() + ttl) if terminal and ttl > 0 else None,
        delete=terminal and ttl < 0,
        run=run,
        token=job.lease_token,
    )


def _serialize_salvaged(queue: Queue, job: Job) -> bytes | str:
    """The payload of a job that failed to serialize, its result already dropped.

    A value put in ``meta`` or ``kwargs`` that cannot be serialized is stored as its
    ``repr`` instead, so that the job's failure is always written.
    """
    try:
        return queue.serialize(job)
    except SerializationError:
        pass
    for name in ("meta", "kwargs"):
        values = getattr(job, name)
        if values:
            setattr(job, name, {k: _storable(queue, v) for k, v in values.items()})
    return queue.serialize(job)


def _storable(queue: Queue, value: Any) -> Any:
    try:
        queue.dump(value)
    except SerializationError:
        return storable_text(repr(value)[:1000])
    return value


def run_detail(queue: Queue, job: Job, result: Any, traceback: str | None) -> bytes | str:
    """What a run record keeps besides its columns: arguments, result, traceback, trigger."""
    meta = job.meta or {}
    detail = {
        "kwargs": job.kwargs or {},
        "result": result,
        "traceback": traceback,
        "trigger": meta.get("trigger", "enqueued"),
        "cron": meta.get("cron"),
        "scheduled_for": meta.get("scheduled_for"),
    }
    try:
        return queue.dump(detail, job.function, "result")
    except SerializationError:
        detail["result"] = _storable(queue, result)
        detail["kwargs"] = {k: _storable(queue, v) for k, v in (job.kwargs or {}).items()}
        return queue.dump(detail, job.function, "run detail")


def recovery_transition(queue: Queue, job: Job) -> Transition:
    """What happens to a job whose worker died: retry if it may, else fail.

    A job that was being aborted ends aborted.
    """
    if job.status == Status.ABORTING:
        return transition(queue, job, Status.ABORTED)
    error = queue.swept_error_message
    if job.retryable:
        return transition(queue, job, Status.QUEUED, error=error)
    return transition(queue, job, Status.FAILED, error=error)
