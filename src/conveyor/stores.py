"""The stores behind a queue, built from URLs: the body of ``Queue.from_url``.

A queue's jobs live in the backend of its URL. Given a ``runs_url`` too, run records and
their logs live in that other store, and the queue gets a
:class:`~conveyor.backends.split.SplitBackend` over the two.
"""

from __future__ import annotations

import hashlib
from typing import Any

from conveyor.backends import backend_from_url
from conveyor.backends.base import Backend
from conveyor.errors import ConfigurationError
from conveyor.serialization import Loader, default_load

#: The keyword arguments of ``Queue.from_url`` that go to the queue; the rest go to the backend.
QUEUE_OPTIONS = frozenset(
    {"name", "dump", "load", "defaults", "swept_error_message", "instrumentation"}
)


def split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The queue's options and the backend's, from ``Queue.from_url``'s keyword arguments."""
    queue_kwargs = {k: v for k, v in kwargs.items() if k in QUEUE_OPTIONS}
    backend_kwargs = {k: v for k, v in kwargs.items() if k not in QUEUE_OPTIONS}
    return queue_kwargs, backend_kwargs


def backend_for_urls(
    url: str, runs_url: str | None, name: str, load: Loader | None, /, **backend_kwargs: Any
) -> Backend:
    """The backend of queue ``name``: its URL's, or a split one when ``runs_url`` is given.

    Args:
        url: The job store's URL (see ``Queue.from_url``).
        runs_url: The run store's URL, or None to keep runs with the jobs.
        name: The queue's name.
        load: The queue's deserializer (``json.loads`` by default); a split backend reads
            each claimed job's function name with it.
        **backend_kwargs: Options of the job store's backend.

    Raises:
        UnsupportedURLError: For an unknown scheme, listing the supported ones.
        MissingDependencyError: When a backend's extra is not installed.
        ConfigurationError: When the run store's backend cannot keep another store's runs.
    """
    backend = backend_from_url(url, name, **backend_kwargs)
    if runs_url is None:
        return backend
    loads = load or default_load
    # The URL's digest tells job stores apart in a shared run store; the name, queues.
    digest = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:8]
    runs = backend_from_url(runs_url, name)
    if not runs.capabilities.run_store:
        raise ConfigurationError(
            f"the {runs.name} backend cannot keep another store's runs (runs_url="
            f"{runs_url.split('://', 1)[0]}://...); use SQLite, PostgreSQL or memory"
        )
    from conveyor.backends.split import SplitBackend  # only for a separate run store

    return SplitBackend(
        backend,
        runs,
        function_of=lambda row: str(loads(row.payload)["function"]),
        namespace=f"{backend.name}-{digest}:{name}",
    )


__all__ = ["QUEUE_OPTIONS", "backend_for_urls", "split_options"]
