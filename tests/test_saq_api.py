"""SAQ's public modules under ``conveyor.``: every name they export, and SAQ's signatures.

What a SAQ program imports after ``s/saq/conveyor/`` must exist, and its calls must bind the
same way: each parameter of SAQ's documented signature exists under the same name, a
positional one at the same position, and one SAQ gives a default has that default here
(unless listed as a deliberate difference, with the reason). Parameters Conveyor adds have
defaults. The expected signatures are written from SAQ's documentation and API reference
(SAQ 0.2x), as a user calls them.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

import pytest

#: The names each of SAQ's public modules exports, at its ``conveyor.`` path.
SAQ_NAMES: dict[str, list[str]] = {
    "conveyor": ["CronJob", "Job", "Queue", "Status", "Worker"],
    "conveyor.job": [
        "ACTIVE_STATUSES",
        "TERMINAL_STATUSES",
        "UNSUCCESSFUL_TERMINAL_STATUSES",
        "CronJob",
        "Job",
        "Status",
    ],
    "conveyor.queue": ["JobError", "Queue"],
    "conveyor.queue.base": ["JobError", "Queue"],
    "conveyor.queue.redis": ["RedisQueue"],
    "conveyor.queue.postgres": ["PostgresQueue"],
    "conveyor.worker": ["Worker"],
    "conveyor.errors": ["InvalidUrlError", "MissingDependencyError"],
    "conveyor.utils": [
        "cancel_tasks",
        "exponential_backoff",
        "millis",
        "now",
        "now_seconds",
        "seconds",
        "uuid1",
    ],
    "conveyor.types": [
        "BeforeEnqueueType",
        "Context",
        "CountKind",
        "CtxType",
        "DumpType",
        "DurationKind",
        "Function",
        "FunctionsType",
        "JobTaskContext",
        "ListenCallback",
        "LoadType",
        "PartialTimersDict",
        "QueueInfo",
        "QueueStats",
        "ReceivesContext",
        "SettingsDict",
        "TimersDict",
        "VersionTuple",
        "WorkerInfo",
        "WorkerStats",
    ],
}
#: Built on another branch (the HTTP queue); checked once it is there.
HTTP_NAMES = {"conveyor.queue.http": ["HttpProxy", "HttpQueue"]}

# SAQ's signatures, as parameter lists: (module, class, method or "" for the constructor).
SIGNATURES: dict[tuple[str, str, str], str] = {
    ("conveyor.queue.redis", "RedisQueue", ""): (
        "redis, name='default', dump=None, load=None, max_concurrent_ops=20, "
        "swept_error_message=None"
    ),
    ("conveyor.queue.postgres", "PostgresQueue", ""): (
        "pool=None, url=None, name='default', versions_table='saq_versions', "
        "jobs_table='saq_jobs', stats_table='saq_stats', dump=None, load=None, min_size=4, "
        "max_size=20, saq_lock_keyspace=0, priorities=(0, 32767), swept_error_message=None, "
        "manage_pool_lifecycle=None"
    ),
    ("conveyor.worker", "Worker", ""): (
        "queue, functions, *, id=None, concurrency=10, cron_jobs=None, cron_tz=UTC, "
        "startup=None, shutdown=None, before_process=None, after_process=None, timers=None, "
        "dequeue_timeout=0.0, burst=False, max_burst_jobs=None, shutdown_grace_period_s=None, "
        "cancellation_hard_deadline_s=1.0, metadata=None, poll_interval=0.0"
    ),
    ("conveyor.job", "CronJob", ""): (
        "function, cron, unique=True, timeout=None, heartbeat=None, retries=None, ttl=None, "
        "kwargs=None"
    ),
    ("conveyor.job", "Job", ""): (
        "function, kwargs=None, queue=None, key=KEY, timeout=10, heartbeat=0, retries=1, "
        "ttl=600, retry_delay=0.0, retry_backoff=False, scheduled=0, progress=0.0, "
        "attempts=0, completed=0, queued=0, started=0, touched=0, result=None, error=None, "
        "status=NEW, priority=0, group_key=None, meta=META"
    ),
    ("conveyor.queue", "Queue", "from_url"): "url, **kwargs",
    ("conveyor.queue.redis", "RedisQueue", "from_url"): "url, **kwargs",
    ("conveyor.queue.postgres", "PostgresQueue", "from_url"): "url, **kwargs",
    ("conveyor.queue", "Queue", "connect"): "self",
    ("conveyor.queue", "Queue", "disconnect"): "self",
    ("conveyor.queue", "Queue", "enqueue"): "self, job_or_func, **kwargs",
    ("conveyor.queue", "Queue", "apply"): "self, job_or_func, timeout=None, **kwargs",
    ("conveyor.queue", "Queue", "map"): (
        "self, job_or_func, iter_kwargs, timeout=None, return_exceptions=False, **kwargs"
    ),
    ("conveyor.queue", "Queue", "listen"): "self, job_keys, callback, timeout=10",
    ("conveyor.queue", "Queue", "job"): "self, job_key",
    ("conveyor.queue", "Queue", "jobs"): "self, job_keys",
    ("conveyor.queue", "Queue", "iter_jobs"): "self, statuses=STATUSES, batch_size=100",
    ("conveyor.queue", "Queue", "count"): "self, kind",
    ("conveyor.queue", "Queue", "info"): "self, jobs=False, offset=0, limit=10",
    ("conveyor.queue", "Queue", "abort"): "self, job, error, ttl=5",
    ("conveyor.queue", "Queue", "retry"): "self, job, error",
    ("conveyor.queue", "Queue", "finish"): "self, job, status, *, result=None, error=None",
    ("conveyor.queue", "Queue", "update"): "self, job, **kwargs",
    ("conveyor.queue", "Queue", "dequeue"): "self, timeout=0",
    ("conveyor.queue", "Queue", "schedule"): "self, lock=1",
    ("conveyor.queue", "Queue", "sweep"): "self, lock=60, abort=5.0",
    ("conveyor.queue", "Queue", "register_before_enqueue"): "self, callback",
    ("conveyor.queue", "Queue", "unregister_before_enqueue"): "self, callback",
    ("conveyor.queue", "Queue", "batch"): "self",
    ("conveyor.queue", "Queue", "serialize"): "self, job",
    ("conveyor.queue", "Queue", "deserialize"): "self, payload",
    ("conveyor.queue", "Queue", "job_id"): "self, job_key",
    ("conveyor.job", "Job", "enqueue"): "self, queue=None",
    ("conveyor.job", "Job", "abort"): "self, error, ttl=5",
    ("conveyor.job", "Job", "finish"): "self, status, *, result=None, error=None",
    ("conveyor.job", "Job", "retry"): "self, error",
    ("conveyor.job", "Job", "update"): "self, **kwargs",
    ("conveyor.job", "Job", "refresh"): "self, until_complete=None",
    ("conveyor.job", "Job", "duration"): "self, kind",
    ("conveyor.job", "Job", "to_dict"): "self",
    ("conveyor.job", "Job", "next_retry_delay"): "self",
    ("conveyor.utils", "", "now"): "",
    ("conveyor.utils", "", "now_seconds"): "",
    ("conveyor.utils", "", "uuid1"): "",
    ("conveyor.utils", "", "millis"): "s",
    ("conveyor.utils", "", "seconds"): "ms",
    ("conveyor.utils", "", "exponential_backoff"): (
        "attempts, base_delay, max_delay=None, jitter=True"
    ),
    ("conveyor.utils", "", "cancel_tasks"): "tasks, timeout=1.0",
}
#: Defaults in SAQ's signatures that are not literals: compared by name only.
_SYMBOLIC = {"UTC", "KEY", "NEW", "META", "STATUSES"}
#: Defaults that differ on purpose: (module, class, method, parameter) -> Conveyor's value.
DELIBERATE: dict[tuple[str, str, str, str], Any] = {
    # Graceful stop: running jobs get 10 s to finish (SAQ cancels them at once).
    ("conveyor.worker", "Worker", "", "shutdown_grace_period_s"): 10.0,
    # Workers are woken by the backend; the option is accepted and ignored.
    ("conveyor.worker", "Worker", "", "poll_interval"): None,
    # None: UTC, unless a CronJob names its own time zone.
    ("conveyor.worker", "Worker", "", "cron_tz"): None,
    # Conveyor's job defaults are sentinels, so a queue's defaults can fill them in; they
    # compare equal to SAQ's values.
    ("conveyor.job", "Job", "", "retry_backoff"): 0,
}


def _saq_signature(parameters: str) -> inspect.Signature:
    namespace: dict[str, Any] = {name: name for name in _SYMBOLIC}
    exec(f"def saq({parameters}): pass", namespace)  # a parameter list written above
    return inspect.signature(namespace["saq"])


def _target(module: str, owner: str, method: str) -> Any:
    loaded = importlib.import_module(module)
    obj = getattr(loaded, owner) if owner else loaded
    if not method:
        return obj
    return inspect.getattr_static(obj, method) if owner else getattr(obj, method)


def _ours(module: str, owner: str, method: str) -> inspect.Signature:
    target = _target(module, owner, method)
    if isinstance(target, classmethod | staticmethod):
        target = target.__func__
        signature = inspect.signature(target)
        if isinstance(_target(module, owner, method), classmethod):
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        return signature
    if owner and not method:
        signature = inspect.signature(target.__init__)
        return signature.replace(parameters=list(signature.parameters.values())[1:])
    return inspect.signature(target)


def incompatibilities(
    saq: inspect.Signature, ours: inspect.Signature, deliberate: dict[str, Any]
) -> list[str]:
    """How a call written for ``saq`` could fail or behave otherwise against ``ours``."""
    problems = []
    ours_params = ours.parameters
    ours_list = list(ours_params.values())
    kinds = inspect.Parameter
    for index, param in enumerate(saq.parameters.values()):
        if param.kind in (kinds.VAR_KEYWORD, kinds.VAR_POSITIONAL):
            if not any(p.kind == param.kind for p in ours_list):
                problems.append(f"no {param}")
            continue
        mine = ours_params.get(param.name)
        if mine is None:
            problems.append(f"no parameter {param.name!r}")
            continue
        if param.kind == kinds.POSITIONAL_OR_KEYWORD and (
            index >= len(ours_list) or ours_list[index].name != param.name
        ):
            problems.append(f"{param.name!r} is not positional at index {index}")
        if mine.kind == kinds.POSITIONAL_ONLY:
            problems.append(f"{param.name!r} cannot be passed by name")
        if param.default is param.empty:
            continue
        if mine.default is mine.empty:
            problems.append(f"{param.name!r} has no default (SAQ's is {param.default!r})")
        elif param.name in deliberate:
            if mine.default != deliberate[param.name]:
                problems.append(f"{param.name!r} defaults to {mine.default!r}")
        elif param.default not in _SYMBOLIC and mine.default != param.default:
            problems.append(
                f"{param.name!r} defaults to {mine.default!r}, SAQ's to {param.default!r}"
            )
    for mine in ours_list:
        optional = mine.default is not mine.empty or mine.kind in (
            kinds.VAR_KEYWORD,
            kinds.VAR_POSITIONAL,
        )
        if mine.name not in saq.parameters and not optional:
            problems.append(f"Conveyor's {mine.name!r} is required")
    return problems


@pytest.mark.parametrize("module", sorted(SAQ_NAMES))
def test_every_name_of_saqs_public_modules_imports_from_its_conveyor_path(module: str) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in SAQ_NAMES[module] if not hasattr(loaded, name)]
    assert missing == [], f"{module} lacks {missing}"


@pytest.mark.parametrize("module", sorted(HTTP_NAMES))
def test_the_http_queue_module_exports_saqs_names(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is built on the HTTP queue's branch")
    loaded = importlib.import_module(module)
    assert [name for name in HTTP_NAMES[module] if not hasattr(loaded, name)] == []


@pytest.mark.parametrize(
    "where", sorted(SIGNATURES), ids=lambda w: ".".join(part for part in w if part)
)
def test_saqs_signature_binds_the_same_way(where: tuple[str, str, str]) -> None:
    deliberate = {p: v for (m, o, f, p), v in DELIBERATE.items() if (m, o, f) == where}
    problems = incompatibilities(_saq_signature(SIGNATURES[where]), _ours(*where), deliberate)
    assert problems == [], f"{'.'.join(p for p in where if p)}: {problems}"


def test_the_signature_check_finds_what_breaks_a_saq_call() -> None:
    saq = _saq_signature("self, a, b=1, *, c=None, **kwargs")

    def ours(
        self: Any, b: int = 2, a: int = 0, *, d: int, **kwargs: Any
    ) -> None:  # pragma: no cover - inspected only
        pass

    problems = incompatibilities(saq, inspect.signature(ours), {})
    assert problems == [
        "'a' is not positional at index 1",
        "'b' is not positional at index 2",
        "'b' defaults to 2, SAQ's to 1",
        "no parameter 'c'",
        "Conveyor's 'd' is required",
    ]
    assert incompatibilities(saq, saq, {}) == []
