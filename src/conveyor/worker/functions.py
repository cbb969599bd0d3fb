"""Normalising what users pass to a worker: functions, cron jobs and hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from conveyor.cron import function_name
from conveyor.errors import ConfigurationError
from conveyor.worker.processes import InProcess

Hook = Callable[[dict[str, Any]], Any]


def _callable_of(fn: Any) -> Callable[..., Any]:
    inner = getattr(fn, "fn", None)
    handle = inner is not None and hasattr(fn, "name")
    target = inner if handle else fn
    if not callable(target):
        raise ConfigurationError(f"{fn!r} is not callable")
    if handle and getattr(fn, "process", False):
        return InProcess(target, str(fn.name))
    return target  # type: ignore[no-any-return]


def normalize_functions(
    functions: Iterable[Any], cron_jobs: Iterable[Any] = ()
) -> tuple[dict[str, Callable[..., Any]], list[Any]]:
    """Map names to callables; cron jobs' functions are registered too.

    The function of a task handle made with ``process=True`` is mapped to an
    :class:`~conveyor.worker.processes.InProcess`, which the worker runs in a child process.

    Args:
        functions: Callables, ``(name, callable)`` pairs, task handles, or a registry
            (anything with ``functions`` and ``cron_jobs`` attributes).
        cron_jobs: Cron jobs given separately.

    Returns:
        The name-to-callable map and every cron job (given, and from registries).

    Raises:
        ConfigurationError: When two different functions claim one name.
    """
    crons: list[Any] = list(cron_jobs)
    items: list[Any] = []
    if hasattr(functions, "functions") and hasattr(functions, "cron_jobs"):
        items.extend(functions.functions)
        crons.extend(functions.cron_jobs)
    else:
        for item in functions:
            if hasattr(item, "functions") and hasattr(item, "cron_jobs"):
                items.extend(item.functions)
                crons.extend(item.cron_jobs)
            else:
                items.append(item)
    out: dict[str, Callable[..., Any]] = {}
    for item in items:
        if isinstance(item, tuple):
            name, fn = item
            _add(out, str(name), _callable_of(fn))
        else:
            _add(out, function_name(item), _callable_of(item))
    crons = normalize_cron_jobs(crons)
    for cron in crons:
        _add(out, cron.name, _callable_of(cron.function))
    return out, crons


def _add(out: dict[str, Callable[..., Any]], name: str, fn: Callable[..., Any]) -> None:
    existing = out.get(name)
    if existing is not None and existing is not fn and existing != fn:
        raise ConfigurationError(
            f"two functions are registered as {name!r}: {existing!r} and {fn!r}"
        )
    out[name] = fn


def normalize_cron_jobs(cron_jobs: Iterable[Any]) -> list[Any]:
    """Cron jobs without duplicates (the same object given twice counts once)."""
    seen: dict[int, Any] = {}
    for cron in cron_jobs:
        seen.setdefault(id(cron), cron)
    return list(seen.values())


def normalize_hooks(hooks: Hook | Iterable[Hook] | None) -> list[Hook]:
    """One hook, a list of hooks, or None, as a list."""
    if hooks is None:
        return []
    if callable(hooks):
        return [hooks]
    return list(hooks)
