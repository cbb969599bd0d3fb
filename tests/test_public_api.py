"""The public surface: what a SAQ user imports, and nothing accidental."""

from __future__ import annotations

import importlib

import pytest

import conveyor
from conveyor.errors import (
    ConfigurationError,
    InvalidUrlError,
    MissingDependencyError,
    UnsupportedURLError,
)
from conveyor.queue.postgres import PostgresQueue
from conveyor.queue.redis import RedisQueue


def test_public_names_are_curated() -> None:
    assert sorted(conveyor.__all__) == sorted(
        [
            "ACTIVE_STATUSES",
            "TERMINAL_STATUSES",
            "ArgumentsError",
            "BackendError",
            "ConfigurationError",
            "Context",
            "ConveyorError",
            "CronExpressionError",
            "CronJob",
            "CronSchedule",
            "InvalidUrlError",
            "Job",
            "JobError",
            "JobNotFoundError",
            "LeaseLostError",
            "MissingDependencyError",
            "Queue",
            "Registry",
            "SerializationError",
            "SettingsDict",
            "SettingsImportError",
            "Status",
            "Task",
            "UnknownFunctionError",
            "UnsupportedURLError",
            "Worker",
            "__version__",
            "task",
        ]
    )
    for name in conveyor.__all__:
        assert hasattr(conveyor, name), name


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("conveyor", ["Queue", "Job", "Status", "CronJob", "Worker"]),
        ("conveyor.job", ["Job", "Status", "CronJob", "TERMINAL_STATUSES", "ACTIVE_STATUSES"]),
        ("conveyor.queue", ["Queue", "JobError"]),
        ("conveyor.worker", ["Worker"]),
        ("conveyor.types", ["Context", "SettingsDict"]),
        ("conveyor.queue.base", ["Queue", "JobError"]),
        ("conveyor.queue.redis", ["RedisQueue"]),
        ("conveyor.queue.postgres", ["PostgresQueue"]),
        ("conveyor.errors", ["InvalidUrlError", "MissingDependencyError"]),
        ("conveyor.utils", ["now", "now_seconds", "uuid1", "millis", "seconds"]),
    ],
)
def test_saq_import_paths_work(module: str, names: list[str]) -> None:
    loaded = importlib.import_module(module)
    for name in names:
        assert hasattr(loaded, name), f"{module}.{name}"


def test_every_error_derives_from_the_root() -> None:
    errors = importlib.import_module("conveyor.errors")
    for name in dir(errors):
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, conveyor.ConveyorError), name


def test_unknown_scheme_lists_supported_ones() -> None:
    with pytest.raises(UnsupportedURLError) as caught:
        conveyor.Queue.from_url("mongodb://localhost")
    message = str(caught.value)
    for scheme in ("memory://", "sqlite://", "redis://", "postgresql://"):
        assert scheme in message
    with pytest.raises(UnsupportedURLError):
        conveyor.Queue.from_url("not a url")


def test_saqs_invalid_url_error_catches_every_url_error() -> None:
    # SAQ raises InvalidUrlError for a URL it cannot use; Conveyor's errors are ones.
    for url in ("mongodb://localhost", "not a url"):
        with pytest.raises(InvalidUrlError):
            conveyor.Queue.from_url(url)
    with pytest.raises(InvalidUrlError, match=r"RedisQueue\.from_url needs"):
        RedisQueue.from_url("postgresql://localhost/db")
    with pytest.raises(InvalidUrlError, match=r"PostgresQueue\.from_url needs"):
        PostgresQueue.from_url("redis://localhost")
    assert issubclass(InvalidUrlError, ConfigurationError)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379/0", "RedisQueue"),
        ("rediss://localhost:6380/0", "RedisQueue"),
        ("unix:///run/redis.sock", "RedisQueue"),
        ("postgresql://localhost/db", "PostgresQueue"),
        ("postgres://localhost/db", "PostgresQueue"),
        ("postgresql+psycopg://localhost/db", "PostgresQueue"),
        ("sqlite://", "Queue"),
        ("memory://", "Queue"),
    ],
)
def test_from_url_returns_saqs_class_of_the_engine(url: str, expected: str) -> None:
    # Building the queue connects nothing: no server is needed.
    queue = conveyor.Queue.from_url(url)
    assert type(queue).__name__ == expected
    assert isinstance(queue, conveyor.Queue)
    assert isinstance(queue, RedisQueue) == (expected == "RedisQueue")
    assert isinstance(queue, PostgresQueue) == (expected == "PostgresQueue")


def test_from_url_on_a_subclass_keeps_the_subclass() -> None:
    class AppQueue(conveyor.Queue):
        pass

    class AppRedisQueue(RedisQueue):
        pass

    assert type(AppQueue.from_url("redis://localhost")) is AppQueue
    assert type(AppRedisQueue.from_url("redis://localhost")) is AppRedisQueue
    assert type(RedisQueue.from_url("redis://localhost")) is RedisQueue


def test_missing_extra_names_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_redis(name: str, *args: object, **kwargs: object) -> object:
        if name == "redis" or name.startswith("redis."):
            raise ImportError("No module named 'redis'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_redis)
    monkeypatch.delitem(importlib.sys.modules, "redis", raising=False)  # type: ignore[attr-defined]
    with pytest.raises(MissingDependencyError) as caught:
        conveyor.Queue.from_url("redis://localhost")
    assert 'pip install "conveyor[redis]"' in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)


def test_job_defaults_match_saq() -> None:
    job = conveyor.Job("f")
    assert (job.timeout, job.retries, job.ttl, job.heartbeat) == (10, 1, 600, 0)
    assert (job.retry_delay, job.retry_backoff, job.scheduled, job.priority) == (0.0, 0, 0, 0)
    assert job.status == conveyor.Status.NEW
    assert [s.value for s in conveyor.Status] == [
        "new",
        "queued",
        "active",
        "aborting",
        "aborted",
        "failed",
        "complete",
    ]


async def test_queue_connects_on_first_use() -> None:
    queue = conveyor.Queue.from_url("memory://")
    job = await queue.enqueue("echo", key="lazy")
    assert job is not None
    assert (await queue.job("lazy")) is not None
    await queue.disconnect()
