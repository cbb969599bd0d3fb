"""The job state machine and its ownership rules, in one place.

The atomic operations behind each step, and what a backend guarantees about each, are in
:mod:`conveyor.backends.base`; this module decides the steps the core writes.

States (:class:`~conveyor.job.Status`): ``new`` (built, never stored), ``queued`` (claimable
once due; "scheduled" is a queued job not yet due), ``active`` (claimed: a worker holds its
lease), ``aborting`` (active, asked to stop), and the terminal ``complete``, ``failed`` and
``aborted``. A terminal job's row expires after the job's ``ttl`` (at once for -1, never for
0); enqueueing its key again replaces it.

Transitions, and who makes them:

* new -> queued: ``Queue.enqueue`` (refused while an incomplete job has the same key).
* queued -> active: :meth:`Backend.claim`, once due (attempts + 1, a new run, a new
  fencing token).
* queued -> aborted, active -> aborting: ``Queue.abort`` (:meth:`Backend.abort`); a worker
  learns of ``aborting`` when it renews its lease, and ends the attempt.
* active or aborting -> complete, failed, aborted, or queued again (a retry, due after the
  job's backoff): :func:`transition`, written by :meth:`Backend.finish`. The worker picks
  the status from the attempt's outcome; ``Queue.finish`` and ``Queue.retry`` take it from
  the caller.
* active or aborting, lease expired -> :meth:`Backend.recover` keeps the status under a new
  token, then :func:`recovery_transition`: aborting ends aborted; a job with attempts left
  is queued again, due after its backoff; any other fails.
* ``Queue.update(job, status=...)`` (SAQ's way to set a status) adds no transition of its
  own: a status other than the job's current one is made by the step above that makes it,
  with that step's fencing. ``complete``, ``failed`` or ``aborted`` is ``Queue.finish``,
  ``queued`` is ``Queue.retry``, ``aborting`` is ``Queue.abort``; ``active`` and ``new``
  are refused (only a claim starts an attempt, only an enqueue stores a job). The job's
  current status is stored as a plain update. A job that this process did not claim gets
  no new status but ``aborting`` while it is active or aborting: the outcome of an attempt
  is written by its lease holder only (the check reads the job before the unfenced write).

Ownership (fencing) rules, for every write about a job:

* **A claim's token.** :meth:`Backend.claim` gives the attempt a new token, kept in
  ``Job.lease_token``. :func:`transition` puts it in :attr:`Transition.token`,
  ``Queue.update`` passes it to :meth:`Backend.update`, the worker renews under it; the
  backend stores such a write only while the job is active or aborting under that very
  token. A refused write means the lease is lost: ``Queue`` raises
  :class:`~conveyor.errors.LeaseLostError`; a worker, which also learns it from
  :meth:`Backend.renew` (:attr:`Renewal.lost`), stops the attempt if it still runs and
  writes nothing more about it. Once the attempt's outcome is written the token is spent;
  when the task wrote it itself (``job.finish``, ``job.retry`` or ``job.update(status=...)``
  on the job it runs), its worker writes nothing more about that attempt.
* **Recovery's new token.** :meth:`Backend.recover` replaces the token, so that from then
  on the late writes of the owner that stopped renewing are refused; the recovery
  transition is written under the new token.
* **Unfenced changes.** A job this process did not claim (``lease_token`` None, as
  ``Queue.job`` loads it) is written without a token. ``Queue.abort`` changes the job by
  its status at that moment (:meth:`Backend.abort`, one atomic step), then ends a job it
  found queued with an unfenced transition; ``Queue.finish``, ``retry`` or ``update``
  called on such a job apply to whatever is stored. A transition ends a run record only
  for an attempt that is running (see :func:`transition`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from conveyor.backends.base import Payload, RunEnd, Transition
from conveyor.errors import SerializationError
from conveyor.job import TERMINAL_STATUSES, Job, Status, now_ms
from conveyor.serialization import storable_text

#: How a queue serializes a job to its stored payload (``Queue.serialize``).
SerializeJob = Callable[[Job], Payload]
#: How a queue serializes any value: ``dump(value, function, what)`` (``Queue.dump``).
DumpValue = Callable[[Any, str, str], Payload]


def transition(
    job: Job,
    status: Status,
    *,
    serialize: SerializeJob,
    dump: DumpValue,
    result: Any = None,
    error: str | None = None,
    traceback: str | None = None,
    delay: float | None = None,
) -> Transition:
    """Decide a job's next state.

    Sets the job's fields (status, result, error, timestamps) and builds the
    :class:`Transition` (with its run's outcome) for the backend, under the job's lease
    token. A result that cannot be serialized fails the job with an error that says so.

    Args:
        job: The job; changed in place.
        status: ``QUEUED`` to retry, or a terminal status.
        serialize: The queue's job serializer (``Queue.serialize``).
        dump: The queue's value serializer (``Queue.dump``), for the run's detail.
        result: The return value, for ``COMPLETE``.
        error: The error message, one line: the run record's error, and the job's
            :attr:`~conveyor.job.Job.error` when there is no traceback.
        traceback: The formatted traceback: the job's ``error`` (as SAQ stores it), and
            the run's detail.
        delay: For ``QUEUED``: seconds before the retry (the job's backoff by default).

    Returns:
        What to hand to :meth:`Backend.finish`.
    """
    now = now_ms()
    job.touched = now
    if traceback is not None:
        traceback = storable_text(traceback)
    short = storable_text(error) if error is not None else None
    if short is not None:
        # As in SAQ, the job keeps the traceback; its run record keeps the one-line error.
        job.error = traceback if traceback is not None else short
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
            detail=run_detail(job, result, traceback, dump),
            error=(short or job.error_summary) if run_status != "complete" else None,
        )
    try:
        payload = serialize(job)
    except SerializationError as exc:
        job.status, job.result = Status.FAILED, None
        job.error = storable_text(str(exc))
        if run is not None:
            run.status, run.error = "failed", job.error
            run.detail = run_detail(job, None, traceback, dump)
        payload = _serialize_salvaged(job, serialize, dump)
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


def recovery_transition(
    job: Job, *, error: str, serialize: SerializeJob, dump: DumpValue
) -> Transition:
    """What happens to a job whose worker died: retry if it may, else fail.

    A job that was being aborted ends aborted.

    Args:
        job: The job as :meth:`Backend.recover` returned it (under the new token).
        error: The error to record (the queue's ``swept_error_message``).
        serialize: As for :func:`transition`.
        dump: As for :func:`transition`.
    """
    if job.status == Status.ABORTING:
        return transition(job, Status.ABORTED, serialize=serialize, dump=dump)
    status = Status.QUEUED if job.retryable else Status.FAILED
    return transition(job, status, error=error, serialize=serialize, dump=dump)


def run_detail(job: Job, result: Any, traceback: str | None, dump: DumpValue) -> Payload:
    """What a run record keeps besides its columns: arguments, result, traceback, trigger.

    A result or an argument that cannot be serialized is kept as its ``repr``.
    """
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
        return dump(detail, job.function, "result")
    except SerializationError:
        detail["result"] = _storable(result, dump)
        detail["kwargs"] = {k: _storable(v, dump) for k, v in (job.kwargs or {}).items()}
        return dump(detail, job.function, "run detail")


def _serialize_salvaged(job: Job, serialize: SerializeJob, dump: DumpValue) -> Payload:
    """The payload of a job that failed to serialize, its result already dropped.

    A value put in ``meta`` or ``kwargs`` that cannot be serialized is stored as its
    ``repr`` instead, so that the job's failure is always written.
    """
    try:
        return serialize(job)
    except SerializationError:
        pass
    for name in ("meta", "kwargs"):
        values = getattr(job, name)
        if values:
            setattr(job, name, {k: _storable(v, dump) for k, v in values.items()})
    return serialize(job)


def _storable(value: Any, dump: DumpValue) -> Any:
    try:
        dump(value, "", "value")
    except SerializationError:
        return storable_text(repr(value)[:1000])
    return value


__all__ = ["DumpValue", "SerializeJob", "recovery_transition", "run_detail", "transition"]
