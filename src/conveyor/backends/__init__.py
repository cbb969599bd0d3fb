"""Backends, and the one place that maps a queue URL to a backend."""

from __future__ import annotations

import importlib
from typing import Any

from conveyor.backends.base import Backend
from conveyor.errors import ConfigurationError, MissingDependencyError, UnsupportedURLError

# scheme -> (module, factory function, third-party import it needs, extra that installs it)
_SCHEMES: dict[str, tuple[str, str, str | None, str | None]] = {
    "memory": ("conveyor.backends.memory", "MemoryBackend", None, None),
    "sqlite": ("conveyor.backends.sqlite", "SQLiteBackend", None, None),
    "redis": ("conveyor.backends.redis", "RedisBackend", "redis", "redis"),
    "rediss": ("conveyor.backends.redis", "RedisBackend", "redis", "redis"),
    "unix": ("conveyor.backends.redis", "RedisBackend", "redis", "redis"),
    "postgres": ("conveyor.backends.postgres", "PostgresBackend", "psycopg", "postgres"),
    "postgresql": ("conveyor.backends.postgres", "PostgresBackend", "psycopg", "postgres"),
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
