"""SAQ's ``PostgresQueue``: the queue on PostgreSQL, on a pool of your own or a URL.

``PostgresQueue(pool=your_pool)`` shares the application's psycopg pool, as SAQ's does;
``PostgresQueue(url=...)`` builds a pool of its own. ``Queue.from_url("postgresql://...")``
returns a ``PostgresQueue`` too. It is a :class:`~conveyor.queue.base.Queue` in every
other respect: the same policy, over the PostgreSQL backend
(:mod:`conveyor.backends.postgres`).

Needs the ``postgres`` extra (``pip install "conveyor[postgres]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from conveyor.backends.base import Backend
from conveyor.errors import ConfigurationError, MissingDependencyError
from conveyor.queue.base import Queue
from conveyor.serialization import Dumper, Loader

try:
    from conveyor.backends.postgres import PostgresBackend
    from conveyor.backends.postgres.config import conninfo_schema, settings_from
except ImportError as exc:
    raise MissingDependencyError("psycopg", "postgres", "conveyor.queue.postgres") from exc

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from conveyor.observability.instrumentation import Instrumentation

__all__ = ["PostgresQueue"]

#: SAQ's priority window: what a ``PostgresQueue`` claims unless told otherwise.
SAQ_PRIORITIES = (0, 32767)


class PostgresQueue(Queue):
    """A queue stored in PostgreSQL, as SAQ's ``PostgresQueue``.

    Its tables live in a schema of their own: ``schema=``, ``?schema=`` in the URL, or the
    first schema of a ``search_path`` in the ``options`` of the URL or of your pool's
    connection string (``options=-c search_path=X``), else ``conveyor``.

    Args:
        pool: Your ``psycopg_pool.AsyncConnectionPool`` (give it or ``url``).
            :meth:`Queue.from_url` passes the backend it built instead.
        url: A PostgreSQL URL; the queue then builds a pool of its own.
        name: The queue's name.
        versions_table: SAQ's table name: only its default is accepted.
        jobs_table: SAQ's table name: only its default is accepted.
        stats_table: SAQ's table name: only its default is accepted.
        dump: Serializer for stored jobs; ``json.dumps`` by default.
        load: Deserializer matching ``dump``.
        min_size: The pool's minimum size, when the queue manages the pool.
        max_size: The pool's maximum size, when the queue manages the pool.
        saq_lock_keyspace: SAQ's advisory lock keyspace: only its default (0) is accepted.
        priorities: ``(lowest, highest)``: the priorities this queue's workers claim, both
            included; jobs outside the window stay queued for other workers.
        swept_error_message: The error recorded on a job whose worker died; Conveyor's
            message when None.
        manage_pool_lifecycle: Whether :meth:`connect` opens the pool (resized to
            ``min_size``..``max_size``) and :meth:`disconnect` closes it. By default, only
            a pool the queue built from ``url``; your own pool must then be open before
            the queue is used, and stays open after :meth:`disconnect`.
        schema: The schema of the queue's tables (wins over the URL's).
        defaults: Defaults for the policy fields of jobs enqueued here (see
            :class:`~conveyor.queue.base.Queue`).
        instrumentation: Metrics and tracing hooks.
        **options: Further options of the PostgreSQL backend: ``poll_interval``,
            ``prepare_threshold``, ``pool_timeout``, ``listen_fallback``.

    Raises:
        ConfigurationError: Without a pool or a URL or with both; for an option Conveyor
            cannot honour (another table name, a lock keyspace), saying what to do instead;
            for an unknown option or a value that cannot work.
    """

    url_schemes: ClassVar[frozenset[str]] = frozenset({"postgres", "postgresql"})

    def __init__(
        self,
        pool: AsyncConnectionPool[Any] | None = None,
        url: str | None = None,
        name: str = "default",
        versions_table: str = "saq_versions",
        jobs_table: str = "saq_jobs",
        stats_table: str = "saq_stats",
        dump: Dumper | None = None,
        load: Loader | None = None,
        min_size: int = 4,
        max_size: int = 20,
        saq_lock_keyspace: int = 0,
        priorities: tuple[int, int] = SAQ_PRIORITIES,
        swept_error_message: str | None = None,
        manage_pool_lifecycle: bool | None = None,
        *,
        schema: str | None = None,
        defaults: dict[str, Any] | None = None,
        instrumentation: Sequence[Instrumentation] = (),
        **options: Any,
    ) -> None:
        if isinstance(pool, Backend):
            backend: Backend = pool
        else:
            if (pool is None) == (url is None):
                raise ConfigurationError(
                    "PostgresQueue needs either pool=... (an AsyncConnectionPool of yours) or "
                    "url=... (a PostgreSQL URL), not " + ("both" if pool is not None else "neither")
                )
            if schema is None and pool is not None and isinstance(pool.conninfo, str):
                schema = conninfo_schema(pool.conninfo)  # your pool's search_path
            if schema is not None:
                options["schema"] = schema
            settings = settings_from(
                url,
                versions_table=versions_table,
                jobs_table=jobs_table,
                stats_table=stats_table,
                saq_lock_keyspace=saq_lock_keyspace,
                min_size=min_size,
                max_size=max_size,
                priorities=priorities,
                **options,
            )
            backend = PostgresBackend(
                name, settings, pool=pool, manage_pool_lifecycle=manage_pool_lifecycle
            )
        super().__init__(backend, name, dump, load, defaults, swept_error_message, instrumentation)

    @classmethod
    def from_url(cls, url: str, runs_url: str | None = None, **kwargs: Any) -> Queue:
        """A queue for a PostgreSQL URL, as ``PostgresQueue(url=url, **kwargs)`` builds it
        (SAQ's pool sizes and priority window by default).

        Args:
            url: A ``postgresql://`` or ``postgres://`` URL.
            runs_url: Keep run records in this other store (see
                :meth:`Queue.from_url`).
            **kwargs: As for :meth:`Queue.from_url`.

        Raises:
            InvalidUrlError: For a URL of another engine.
        """
        defaults = {"min_size": 4, "max_size": 20, "priorities": SAQ_PRIORITIES}
        return super().from_url(url, runs_url, **(defaults | kwargs))

    @property
    def pool(self) -> AsyncConnectionPool[Any] | None:
        """The connection pool: yours, or the queue's own once connected."""
        store: Any = getattr(self.backend, "jobs", self.backend)  # the job store of a split backend
        pool: AsyncConnectionPool[Any] | None = store.pool
        return pool
