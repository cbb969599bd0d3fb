"""The HTTP backend: a queue reached through an :class:`~conveyor.queue.http.HttpProxy`."""

from conveyor.backends.http.backend import HttpBackend

__all__ = ["HttpBackend"]
