"""Worker settings: a dict of :class:`~conveyor.worker.Worker` arguments, found by a dotted path.

``conveyor module.sub.settings`` imports ``module.sub`` and reads its ``settings``
attribute: a dict, or a zero-argument callable returning one (as in SAQ). The current
working directory is put on ``sys.path`` first, so a settings module next to where the
command runs is found, as with ``python -m``.

The dict's keys are the :class:`~conveyor.worker.Worker` arguments, SAQ's names included
(``queue, functions, concurrency, cron_jobs, cron_tz, startup, shutdown, before_process,
after_process, timers, dequeue_timeout, burst, max_burst_jobs, shutdown_grace_period_s,
cancellation_hard_deadline_s, metadata, id``); a key the worker does not know is an error
that names it, rather than a setting silently ignored.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError, SettingsImportError

if TYPE_CHECKING:
    from conveyor.worker import Worker

logger = logging.getLogger("conveyor.settings")

#: The queue a settings dict without ``queue`` gets (SAQ defaults to local Redis; we default
#: to the embedded SQLite file ``conveyor.db`` in the working directory).
DEFAULT_QUEUE_URL = "sqlite://"


def ensure_cwd_on_path() -> None:
    """Put the current working directory first on ``sys.path`` (once), as ``python -m`` does."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_settings(path: str) -> dict[str, Any]:
    """Load worker settings from a dotted path such as ``myapp.worker.settings``.

    Args:
        path: ``module.attribute``; the attribute is a dict, or a callable taking no
            argument that returns one.

    Returns:
        A copy of the settings dict (changing it does not change the module's).

    Raises:
        SettingsImportError: When the module cannot be imported, the attribute is missing,
            or it is neither a dict nor a callable returning one; the message says what was
            looked for and why it failed.
    """
    ensure_cwd_on_path()
    module_name, _, attribute = path.strip().rpartition(".")
    if not module_name or not attribute:
        raise SettingsImportError(
            path,
            "expected a dotted path 'module.attribute' (for example 'myapp.worker.settings')",
        )
    module = _import_module(path, module_name)
    if not hasattr(module, attribute):
        raise SettingsImportError(
            path, f"module {module_name!r} has no attribute {attribute!r}; {_candidates(module)}"
        )
    value = getattr(module, attribute)
    if isinstance(value, Mapping):
        return dict(value)
    if callable(value):
        return _call_settings_factory(path, value)
    raise SettingsImportError(
        path,
        f"{attribute!r} is a {type(value).__name__}; expected a dict of worker settings or a "
        "callable returning one",
    )


def _import_module(path: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            where = "" if missing == module_name else f" (its package {missing!r} was not found)"
            raise SettingsImportError(
                path,
                f"module {module_name!r} not found{where}; it is looked up on sys.path, which "
                f"includes the current directory {os.getcwd()!r}: run the command from the "
                "directory that contains it, or install it",
            ) from None
        raise SettingsImportError(path, f"importing module {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise SettingsImportError(
            path, f"importing module {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc


def _candidates(module: Any) -> str:
    """Public attributes of ``module`` that look like worker settings, as a hint."""
    names = []
    for name, value in sorted(vars(module).items()):
        if name.startswith("_") or inspect.ismodule(value) or inspect.isclass(value):
            continue
        looks_like_dict = isinstance(value, Mapping) and ("queue" in value or "functions" in value)
        named_settings = "settings" in name.lower() and (
            isinstance(value, Mapping) or callable(value)
        )
        if looks_like_dict or named_settings:
            names.append(name)
    if not names:
        return "it has no public attribute that looks like worker settings (a dict with 'queue')"
    return "attributes that look like settings: " + ", ".join(names)


def _call_settings_factory(path: str, factory: Callable[[], Any]) -> dict[str, Any]:
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise SettingsImportError(
            path, f"the settings callable must take no arguments: {exc}"
        ) from exc
    except ValueError:
        pass  # no signature to inspect (a builtin): just call it
    try:
        value = factory()
    except Exception as exc:
        raise SettingsImportError(
            path, f"calling the settings callable raised {type(exc).__name__}: {exc}"
        ) from exc
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise SettingsImportError(
            path, "the settings callable is async; it must return the dict directly"
        )
    if not isinstance(value, Mapping):
        raise SettingsImportError(
            path,
            f"the settings callable returned a {type(value).__name__}; expected a dict",
        )
    return dict(value)


def worker_arguments() -> list[str]:
    """The names a settings dict may use: the :class:`Worker` constructor's arguments."""
    from conveyor.worker import Worker

    parameters = inspect.signature(Worker.__init__).parameters
    return [name for name in parameters if name != "self"]


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a settings dict and fill in the defaults a SAQ settings dict relies on.

    Args:
        settings: Worker settings.

    Returns:
        A new dict, ready for ``Worker(**settings)``: without ``queue``, a queue on
        :data:`DEFAULT_QUEUE_URL` is added (SAQ adds one on local Redis).

    Raises:
        ConfigurationError: Naming keys the worker does not know (with the closest known
            name), a missing ``functions``, or a ``queue`` that is not a Queue.
    """
    from conveyor.queue import Queue

    known = worker_arguments()
    unknown = [key for key in settings if key not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1)
            hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        raise ConfigurationError(
            f"unknown worker settings: {', '.join(hints)}; known settings: {', '.join(known)}"
        )
    out = dict(settings)
    if "functions" not in out:
        raise ConfigurationError("worker settings need 'functions': the task functions to run")
    if "queue" not in out:
        logger.info("the settings have no 'queue'; using %s", DEFAULT_QUEUE_URL)
        out["queue"] = Queue.from_url(DEFAULT_QUEUE_URL)
    elif not isinstance(out["queue"], Queue):
        raise ConfigurationError(
            f"the 'queue' setting is a {type(out['queue']).__name__}; expected a Queue "
            "(for example Queue.from_url('sqlite:///jobs.db'))"
        )
    return out


def worker_from_settings(settings: Mapping[str, Any], **overrides: Any) -> Worker:
    """Build a worker from a settings dict.

    Args:
        settings: Worker settings, as :func:`check_settings` accepts them.
        **overrides: Settings that replace those of the dict (``burst=True`` ...).

    Returns:
        The worker, not yet started.

    Raises:
        ConfigurationError: When the settings are not valid.
    """
    from conveyor.worker import Worker

    checked = check_settings({**settings, **overrides})
    return Worker(**checked)


def load_worker(path: str, **overrides: Any) -> Worker:
    """Import the settings at ``path`` and build a worker from them.

    Raises:
        SettingsImportError: When the settings cannot be imported.
        ConfigurationError: When they are not valid.
    """
    return worker_from_settings(import_settings(path), **overrides)


__all__ = [
    "DEFAULT_QUEUE_URL",
    "check_settings",
    "ensure_cwd_on_path",
    "import_settings",
    "load_worker",
    "worker_arguments",
    "worker_from_settings",
]
