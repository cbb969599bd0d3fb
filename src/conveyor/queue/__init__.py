"""Queues, laid out as SAQ lays them out.

:class:`Queue` (in :mod:`conveyor.queue.base`) is the one queue class: every policy decision
about a job's life, over one backend chosen by URL. The modules beside it give SAQ's names
for the same queue on a given engine, so ``from saq.queue.redis import RedisQueue`` keeps
working after ``s/saq/conveyor/``.
"""

from conveyor.errors import JobError
from conveyor.queue.base import Queue

__all__ = ["JobError", "Queue"]
