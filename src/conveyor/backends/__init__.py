"""Backends, and the one place that maps a queue URL to a backend."""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

from conveyor.backends.base import Backend
from conveyor.errors import ConfigurationError, MissingDependencyError, UnsupportedURLError
from conveyor.serialization import Loader, default_load

# scheme -> (module, factory function, third-party import it needs, extra that installs it)
_SCHEMES: dict[str, tuple[str, str, str | None, str | None]] = {
    "memory": ("conveyor.backends.memory", "MemoryBackend", None, None),
    "sqlite": ("conveyor.backends.sqlite", "SQLiteBackend", None, None),
    "redis": ("conveyor.backends.redis", "RedisBackend", "redis", "redis"),
    "rediss": ("conveyor.backends.redis", "RedisBackend", "redis", "redis"),
    "unix": ("conveyor.backends.redis", "RedisBackend", "redis", "redis"),
    "postgres": ("conveyor.backends.postgres", "PostgresBackend", "psycopg", "postgres"),
    "postgresql": ("conveyor.backends.postgres", "PostgresBackend", "psycopg", "postgres"),
    "http": ("conveyor.backends.http", "HttpBackend", "httpx", "http"),
    "https": ("conveyor.backends.http", "HttpBackend", "httpx", "http"),
}


def supported_schemes() -> list[str]:
    """The URL schemes ``Queue.from_url`` accepts (without driver suffixes)."""
    return sorted(_SCHEMES)


def backend_from_url(url: str, queue_name: str, **kwargs: Any) -> Backend:
    """Build the backend for ``url``.

    Args:
        url: The queue URL; ``postgresql+psycopg://`` style driver suffixes are accepted.
        queue_name: The queue the backend serves.
        **kwargs: Backend options.

    Raises:
        UnsupportedURLError: For an unknown scheme.
        MissingDependencyError: When the backend's optional dependency is missing.
    """
    if "://" not in url:
        raise UnsupportedURLError(url, _SCHEMES)
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise UnsupportedURLError(url, _SCHEMES)
    module_name, factory_name, requires, extra = _SCHEMES[scheme]
    if requires is not None:
        try:
            importlib.import_module(requires)
        except ImportError:
            raise MissingDependencyError(
                requires, extra or requires, f"the {scheme}:// backend"
            ) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigurationError(
                f"the {scheme}:// backend is not available in this version of conveyor"
            ) from exc
        raise
    factory = getattr(module, factory_name)
    backend: Backend = factory.from_url(url, queue_name, **kwargs)
    return backend


def backend_for_urls(
    url: str, runs_url: str | None, queue_name: str, load: Loader | None, /, **kwargs: Any
) -> Backend:
    """The backend of a queue: its URL's, or a split one when ``runs_url`` is given.

    This is the body of ``Queue.from_url``. Given a ``runs_url``, run records and their logs
    live in that other store, and the queue gets a
    :class:`~conveyor.backends.split.SplitBackend` over the two.

    Args:
        url: The job store's URL (see :func:`backend_from_url`).
        runs_url: The run store's URL, or None to keep runs with the jobs.
        queue_name: The queue the backend serves.
        load: The queue's deserializer (``json.loads`` by default); a split backend reads
            each claimed job's function name with it.
        **kwargs: Options of the job store's backend (the run store gets none).

    Raises:
        UnsupportedURLError: For an unknown scheme, listing the supported ones.
        MissingDependencyError: When a backend's extra is not installed.
        ConfigurationError: When the run store's backend cannot keep another store's runs,
            or the job store is reached over HTTP.
    """
    backend = backend_from_url(url, queue_name, **kwargs)
    if runs_url is None:
        return backend
    if backend.name == "http":
        raise ConfigurationError(
            "a queue reached over HTTP keeps its runs where its proxy's queue keeps them: "
            "give the runs_url to the proxy's queue instead"
        )
    loads = load or default_load
    # The URL's digest tells job stores apart in a shared run store; the name, queues.
    digest = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:8]
    runs = backend_from_url(runs_url, queue_name)
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
        namespace=f"{backend.name}-{digest}:{queue_name}",
    )
