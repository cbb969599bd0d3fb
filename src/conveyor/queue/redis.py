"""SAQ's ``RedisQueue``: the queue on Redis, built on a client of your own.

``RedisQueue(redis_client, name=...)`` takes a ``redis.asyncio.Redis`` client as SAQ's
does, and ``Queue.from_url("redis://...")`` returns a ``RedisQueue`` too. It is a
:class:`~conveyor.queue.base.Queue` in every other respect: the same policy, over the Redis
backend (:mod:`conveyor.backends.redis`).

Needs the ``redis`` extra (``pip install "conveyor[redis]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from conveyor.backends.base import Backend
from conveyor.errors import MissingDependencyError
from conveyor.queue.base import Queue
from conveyor.serialization import Dumper, Loader

try:
    from conveyor.backends.redis import RedisBackend
except ImportError as exc:
    raise MissingDependencyError("redis", "redis", "conveyor.queue.redis") from exc

if TYPE_CHECKING:
    from conveyor.observability.instrumentation import Instrumentation

__all__ = ["RedisQueue"]


class RedisQueue(Queue):
    """A queue stored in Redis, as SAQ's ``RedisQueue``.

    ``await queue.disconnect()`` closes the client (``aclose()``), as SAQ's does; redis-py
    opens new connections when the client is used again, so an application may go on
    using it.

    Args:
        redis: Your ``redis.asyncio.Redis`` client, built with ``decode_responses=False``
            (the default). :meth:`Queue.from_url` passes the backend it built instead.
        name: The queue's name.
        dump: Serializer for stored jobs; ``json.dumps`` by default.
        load: Deserializer matching ``dump``.
        max_concurrent_ops: At most this many connections of the client's pool in use by
            the queue's operations at once, beside the queue's own connection (a call
            waits for a free one).
        swept_error_message: The error recorded on a job whose worker died; Conveyor's
            message when None.
        prefix: The namespace of the queue's keys (``prefix:{name}:...``).
        defaults: Defaults for the policy fields of jobs enqueued here (see
            :class:`~conveyor.queue.base.Queue`).
        instrumentation: Metrics and tracing hooks.

    Raises:
        ConfigurationError: When the client decodes responses, or ``max_concurrent_ops``
            is below 1.
    """

    url_schemes: ClassVar[frozenset[str]] = frozenset({"redis", "rediss", "unix"})

    def __init__(
        self,
        redis: Any,
        name: str = "default",
        dump: Dumper | None = None,
        load: Loader | None = None,
        max_concurrent_ops: int = 20,
        swept_error_message: str | None = None,
        *,
        prefix: str = "conveyor",
        defaults: dict[str, Any] | None = None,
        instrumentation: Sequence[Instrumentation] = (),
    ) -> None:
        if isinstance(redis, Backend):
            backend: Backend = redis
        else:
            backend = RedisBackend(
                redis, name, prefix, owns_client=True, max_concurrent_ops=max_concurrent_ops
            )
        super().__init__(backend, name, dump, load, defaults, swept_error_message, instrumentation)

    @classmethod
    def from_url(cls, url: str, runs_url: str | None = None, **kwargs: Any) -> Queue:
        """A queue for a Redis URL, with SAQ's ``max_concurrent_ops`` (20) unless given.

        Args:
            url: A ``redis://``, ``rediss://`` or ``unix://`` URL.
            runs_url: Keep run records in this other store (see :meth:`Queue.from_url`).
            **kwargs: As for :meth:`Queue.from_url`.

        Raises:
            InvalidUrlError: For a URL of another engine.
        """
        return super().from_url(url, runs_url, **({"max_concurrent_ops": 20} | kwargs))

    @property
    def redis(self) -> Any:
        """The queue's ``redis.asyncio.Redis`` client."""
        store: Any = getattr(self.backend, "jobs", self.backend)  # the job store of a split backend
        return store.client
