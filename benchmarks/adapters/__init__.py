"""Library adapters, by the name used on the command line."""

from __future__ import annotations

import importlib

from adapters.base import Adapter, Target

#: name -> (module, class); the order is the order of the tables' rows.
ADAPTERS: dict[str, tuple[str, str]] = {
    "Conveyor-redis": ("adapters.conveyor_adapter", "ConveyorRedis"),
    "SAQ-redis": ("adapters.saq_adapter", "SaqRedis"),
    "ARQ": ("adapters.arq_adapter", "Arq"),
    "streaQ": ("adapters.streaq_adapter", "Streaq"),
    "taskiq-redis": ("adapters.taskiq_adapter", "Taskiq"),
    "Conveyor-postgres": ("adapters.conveyor_adapter", "ConveyorPostgres"),
    "SAQ-postgres": ("adapters.saq_adapter", "SaqPostgres"),
    "pgqueuer": ("adapters.pgqueuer_adapter", "PgQueuer"),
    "procrastinate": ("adapters.procrastinate_adapter", "Procrastinate"),
    "Conveyor-sqlite": ("adapters.conveyor_adapter", "ConveyorSqlite"),
}

GROUPS = {
    "redis": ["Conveyor-redis", "SAQ-redis", "ARQ", "streaQ", "taskiq-redis"],
    "postgres": [
        "Conveyor-postgres",
        "SAQ-postgres",
        "pgqueuer",
        "procrastinate",
        "Conveyor-sqlite",
    ],
}


def adapter_class(name: str) -> type[Adapter]:
    """The adapter class for ``name`` (importing only that library)."""
    module, cls = ADAPTERS[name]
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


__all__ = ["ADAPTERS", "GROUPS", "Adapter", "Target", "adapter_class"]
