"""Loading worker settings from a dotted path, as ``conveyor module.settings`` does."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.errors import ConfigurationError, SettingsImportError
from conveyor.queue import Queue
from conveyor.settings import check_settings, import_settings, worker_from_settings
from conveyor.worker import Worker

ModuleFactory = Callable[[str], str]


@pytest.fixture
def settings_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleFactory]:
    """Write a module into a fresh working directory; returns its (unique) name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    names: list[str] = []

    def write(source: str) -> str:
        name = f"settings_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


BASIC = """
    from conveyor.queue import Queue

    async def add(ctx, *, a, b):
        return a + b

    queue = Queue.from_url("memory://", name="settings-test")
    settings = {"queue": queue, "functions": [add], "concurrency": 3}

    def make_settings():
        return {"queue": queue, "functions": [add], "concurrency": 5}

    worker_settings = {"queue": queue, "functions": [add]}
    number = 42
"""


def test_dict_settings_from_the_current_directory(settings_module: ModuleFactory) -> None:
    name = settings_module(BASIC)
    settings = import_settings(f"{name}.settings")
    assert settings["concurrency"] == 3
    assert isinstance(settings["queue"], Queue)
    settings["concurrency"] = 99  # a copy: the module's dict is left alone
    assert import_settings(f"{name}.settings")["concurrency"] == 3


def test_callable_settings_are_called(settings_module: ModuleFactory) -> None:
    name = settings_module(BASIC)
    assert import_settings(f"{name}.make_settings")["concurrency"] == 5


def test_settings_build_a_worker(settings_module: ModuleFactory) -> None:
    name = settings_module(BASIC)
    worker = worker_from_settings(import_settings(f"{name}.settings"), burst=True)
    assert isinstance(worker, Worker)
    assert worker.concurrency == 3
    assert worker.burst is True
    assert "add" in worker.functions


def test_missing_module_names_it_and_the_search_path(
    settings_module: ModuleFactory, tmp_path: Path
) -> None:
    with pytest.raises(SettingsImportError) as caught:
        import_settings("no_such_module_here.settings")
    message = str(caught.value)
    assert "'no_such_module_here'" in message
    assert "not found" in message
    assert "current directory" in message and str(tmp_path) in message
    assert caught.value.path == "no_such_module_here.settings"


def test_missing_package_of_a_module_is_named(settings_module: ModuleFactory) -> None:
    with pytest.raises(SettingsImportError, match=r"package 'nopkg_xyz' was not found"):
        import_settings("nopkg_xyz.worker.settings")


def test_missing_attribute_lists_what_looks_like_settings(
    settings_module: ModuleFactory,
) -> None:
    name = settings_module(BASIC)
    with pytest.raises(SettingsImportError) as caught:
        import_settings(f"{name}.setings")
    message = str(caught.value)
    assert "no attribute 'setings'" in message
    for candidate in ("settings", "make_settings", "worker_settings"):
        assert candidate in message
    assert "number" not in message and "Queue" not in message


def test_missing_attribute_in_a_module_without_settings(
    settings_module: ModuleFactory,
) -> None:
    name = settings_module("value = 1\n")
    with pytest.raises(SettingsImportError, match="no public attribute that looks like"):
        import_settings(f"{name}.settings")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("settings = 42\n", "'settings' is a int; expected a dict"),
        ("def settings():\n    return [1]\n", "returned a list; expected a dict"),
        ("def settings(env):\n    return {}\n", "must take no arguments"),
        ("async def settings():\n    return {}\n", "is async"),
        ("def settings():\n    raise KeyError('DB_URL')\n", "raised KeyError: 'DB_URL'"),
    ],
)
def test_settings_that_are_not_a_dict(
    settings_module: ModuleFactory, source: str, expected: str
) -> None:
    name = settings_module(source)
    with pytest.raises(SettingsImportError, match=expected):
        import_settings(f"{name}.settings")


def test_a_module_that_fails_to_import_keeps_its_error(settings_module: ModuleFactory) -> None:
    name = settings_module("raise RuntimeError('DATABASE_URL is not set')\n")
    with pytest.raises(SettingsImportError, match="DATABASE_URL is not set") as caught:
        import_settings(f"{name}.settings")
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_module_importing_something_missing_is_not_reported_as_missing(
    settings_module: ModuleFactory,
) -> None:
    name = settings_module("import not_installed_dependency_abc\nsettings = {}\n")
    with pytest.raises(SettingsImportError) as caught:
        import_settings(f"{name}.settings")
    message = str(caught.value)
    assert f"importing module {name!r} failed" in message
    assert "not_installed_dependency_abc" in message


def test_a_path_without_a_dot_is_refused() -> None:
    with pytest.raises(SettingsImportError, match=r"dotted path 'module\.attribute'"):
        import_settings("settings")


def test_every_saq_setting_is_accepted() -> None:
    async def job(ctx: dict[str, object]) -> None:
        return None

    async def hook(ctx: dict[str, object]) -> None:
        return None

    queue = Queue.from_url("memory://")
    saq_settings = {
        "queue": queue,
        "functions": [job],
        "concurrency": 2,
        "cron_jobs": [],
        "cron_tz": "Europe/Berlin",
        "startup": hook,
        "shutdown": [hook],
        "before_process": hook,
        "after_process": hook,
        "timers": {"schedule": 1, "stats": 10, "sweep": 60, "abort": 1},
        "dequeue_timeout": 1,
        "burst": True,
        "max_burst_jobs": 10,
        "shutdown_grace_period_s": 5,
        "cancellation_hard_deadline_s": 2,
        "metadata": {"team": "billing"},
        "id": "worker-1",
    }
    worker = Worker(**check_settings(saq_settings))
    assert worker.id == "worker-1"
    assert worker.metadata == {"team": "billing"}
    assert worker.max_burst_jobs == 10


def test_unknown_settings_are_named_with_a_suggestion() -> None:
    settings = {"queue": Queue.from_url("memory://"), "functions": [], "concurency": 5}
    with pytest.raises(ConfigurationError) as caught:
        check_settings({**settings, "web_port": 1})
    message = str(caught.value)
    assert "'concurency' (did you mean 'concurrency'?)" in message
    assert "'web_port'" in message


def test_functions_are_required() -> None:
    with pytest.raises(ConfigurationError, match="need 'functions'"):
        check_settings({"queue": Queue.from_url("memory://")})


def test_a_queue_must_be_a_queue() -> None:
    with pytest.raises(ConfigurationError, match="expected a Queue"):
        check_settings({"queue": "redis://localhost", "functions": []})


def test_without_a_queue_the_embedded_default_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("conveyor.backends.sqlite", reason="the SQLite backend is not here yet")
    monkeypatch.chdir(tmp_path)
    settings = check_settings({"functions": []})
    assert settings["queue"].backend.name == "sqlite"
