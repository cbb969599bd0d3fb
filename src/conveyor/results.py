"""From finished jobs to results: ``Queue.apply``, and what ``Queue.map`` returns.

A job that completed gives its result; one that failed or was aborted gives a
:class:`~conveyor.errors.JobError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from conveyor.errors import JobError
from conveyor.job import POLICY_FIELDS, Job, Status

if TYPE_CHECKING:
    from conveyor.queue import Queue
    from conveyor.tasks import Task


async def apply(
    queue: Queue, job_or_func: str | Job | Task[Any, Any], timeout: float | None, kwargs: Any
) -> Any:
    """Enqueue a job on ``queue`` and wait for its result (the body of ``Queue.apply``).

    Raises:
        JobError: When the job failed or was aborted.
        TimeoutError: When it did not finish in time.
    """
    if isinstance(job_or_func, Job):
        # A whole job: enqueue it as it is (its key, arguments and options) and wait.
        job = await queue.enqueue(job_or_func, **kwargs)
        key = job.key if job is not None else job_or_func.key
        [finished] = await queue.wait([key], timeout)
        return result_of(finished)
    results = await queue.map(job_or_func, [kwargs], timeout=timeout)
    return results[0]


def template_arguments(template: Job, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The options and arguments of a template job, under ``kwargs`` (which win)."""
    options = {k: getattr(template, k) for k in (*POLICY_FIELDS, "priority", "group_key")}
    return {**options, **(template.kwargs or {}), **kwargs}


def result_of(job: Job) -> Any:
    """The result of a finished job.

    Raises:
        JobError: When the job failed or was aborted.
    """
    if job.status != Status.COMPLETE:
        raise JobError(job)
    return job.result


def results_of(jobs: Iterable[Job], return_exceptions: bool) -> list[Any]:
    """The results of finished jobs, in order.

    Args:
        jobs: The finished jobs.
        return_exceptions: Put a :class:`JobError` in the list for a job that failed or was
            aborted, instead of raising the first.

    Raises:
        JobError: For the first job that failed or was aborted, unless ``return_exceptions``.
    """
    results: list[Any] = []
    for job in jobs:
        if job.status == Status.COMPLETE:
            results.append(job.result)
            continue
        error = JobError(job)
        if not return_exceptions:
            raise error
        results.append(error)
    return results


__all__ = ["apply", "result_of", "results_of", "template_arguments"]
