"""Task handles, the task decorator and registries: what users write and rely on."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.cron import CronJob
from conveyor.errors import ArgumentsError, ConfigurationError, CronExpressionError, JobError
from conveyor.job import Status
from conveyor.queue import Queue
from conveyor.tasks import Registry, Task, task
from conveyor.testing.fixtures import running_worker
from conveyor.types import Context
from conveyor.worker import Worker
from mypy_support import run_mypy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def queue() -> AsyncIterator[Queue]:
    async with Queue.from_url("memory://", name="tasks") as connected:
        yield connected


@task
async def add(ctx: Context, *, a: int, b: int = 0) -> int:
    return a + b


@task(name="mail.send", timeout=30, retries=3)
async def send_email(ctx: Context, *, to: str, key: str | None = None) -> str:
    return f"{to}:{key}"


@task
def shout(ctx: Context, *, text: str) -> str:
    return text.upper()


@task
async def explode(ctx: Context) -> None:
    raise ValueError("boom")


async def positional(ctx: Context, /, a: int, b: int, **extra: int) -> int:
    return a + b + sum(extra.values())


# The handle itself


def test_bare_decorator_names_the_task_after_the_function() -> None:
    assert isinstance(add, Task)
    assert add.name == "add"
    assert add.job_options == {}
    assert add.__name__ == "add"


def test_decorator_options_set_the_name_and_job_options() -> None:
    assert send_email.name == "mail.send"
    assert send_email.job_options == {"timeout": 30, "retries": 3}


async def test_calling_a_handle_calls_the_function() -> None:
    ctx: Context = {"db": "fake"}
    assert await add(ctx, a=2, b=3) == 5
    assert await shout(ctx, text="hi") == "HI"
    with pytest.raises(ValueError, match="boom"):
        await explode({})


def test_a_task_needs_a_context_parameter_and_known_options() -> None:
    async def no_ctx() -> None:
        """Takes no context."""

    with pytest.raises(ConfigurationError, match="context"):
        task(no_ctx)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="colour"):
        Task(positional, job_options={"colour": "red"})
    with pytest.raises(ConfigurationError, match="callable"):
        Task("add")  # type: ignore[call-overload]


def test_options_returns_a_bound_copy() -> None:
    keyed = send_email.options(key="welcome-1", timeout=5, scheduled=100.0)
    assert keyed.job_options == {"timeout": 5, "retries": 3, "key": "welcome-1", "scheduled": 100.0}
    assert keyed.name == send_email.name and keyed.fn is send_email.fn
    assert send_email.job_options == {"timeout": 30, "retries": 3}


# Enqueue and apply


async def test_enqueue_stores_the_arguments_and_job_options(queue: Queue) -> None:
    job = await send_email.options(key="welcome-1").enqueue(queue, to="a@example.com")
    assert job is not None
    stored = await queue.job("welcome-1")
    assert stored is not None
    assert stored.function == "mail.send"
    assert stored.kwargs == {"to": "a@example.com"}
    assert (stored.timeout, stored.retries, stored.status) == (30, 3, Status.QUEUED)


async def test_a_key_blocks_a_second_incomplete_job(queue: Queue) -> None:
    keyed = add.options(key="only-one")
    assert await keyed.enqueue(queue, a=1) is not None
    assert await keyed.enqueue(queue, a=2) is None
    assert await queue.count("queued") == 1


async def test_parameters_named_like_job_fields_reach_the_function(queue: Queue) -> None:
    job = await send_email.enqueue(queue, to="b@example.com", key="an-argument")
    assert job is not None
    stored = await queue.job(job.key)
    assert stored is not None
    assert stored.key != "an-argument"
    assert stored.kwargs == {"to": "b@example.com", "key": "an-argument"}


async def test_positional_arguments_become_keywords(queue: Queue) -> None:
    handle = Task(positional)
    job = await handle.enqueue(queue, 1, 2, c=3)
    assert job is not None
    assert job.kwargs == {"a": 1, "b": 2, "c": 3}


async def test_arguments_that_do_not_fit_are_refused_before_storing(queue: Queue) -> None:
    loose: Any = add
    with pytest.raises(ArgumentsError) as raised:
        await loose.enqueue(queue, a=1, c=2)
    assert raised.value.function == "add"
    assert "c" in str(raised.value)
    with pytest.raises(ArgumentsError):
        await loose.enqueue(queue)  # a is required
    assert await queue.count("queued") == 0


async def test_apply_returns_the_result_through_a_worker(queue: Queue) -> None:
    registry = Registry()
    registry.add(add)
    registry.add(shout)
    async with running_worker(queue, registry):
        assert await add.apply(queue, 10, a=1, b=2) == 3
        assert await shout.apply(queue, timeout=10, text="sync") == "SYNC"


async def test_apply_raises_job_error_when_the_task_fails(queue: Queue) -> None:
    async with running_worker(queue, [explode]):
        with pytest.raises(JobError) as raised:
            await explode.apply(queue, 10)
    assert raised.value.job.status == Status.FAILED
    assert "boom" in (raised.value.job.error or "")


async def test_queue_accepts_handles_and_names(queue: Queue) -> None:
    async with running_worker(queue, [add]):
        assert await queue.apply(add, timeout=10, a=4, b=5) == 9
        assert await queue.apply("add", timeout=10, a=1) == 1


# Registry


def test_registry_collects_tasks_with_and_without_options() -> None:
    registry = Registry()

    @registry.task
    async def first(ctx: Context) -> int:
        return 1

    @registry.task(name="second.name", timeout=7)
    async def second(ctx: Context, *, x: int) -> int:
        return x

    assert registry.functions == [first, second]
    assert registry.get("second.name") is second
    assert registry.get("missing") is None
    assert "first" in registry and len(registry) == 2
    assert list(registry) == [first, second]
    assert second.job_options == {"timeout": 7}
    assert registry.cron_jobs == []


def test_duplicate_names_name_both_functions() -> None:
    registry = Registry()

    @registry.task(name="report")
    async def daily_report(ctx: Context) -> None:
        """One."""

    async def weekly_report(ctx: Context) -> None:
        """Two."""

    with pytest.raises(ConfigurationError) as raised:
        registry.task(name="report")(weekly_report)
    message = str(raised.value)
    assert "daily_report" in message and "weekly_report" in message
    assert registry.get("report") is daily_report


def test_registering_the_same_function_twice_is_harmless() -> None:
    registry = Registry()
    registry.add(add)
    registry.add(add)
    registry.task(add)
    assert registry.functions == [add]
    with pytest.raises(ConfigurationError, match="different options"):
        registry.add(add.options(timeout=99))


def test_scheduled_task_registers_the_task_and_a_cron_job() -> None:
    registry = Registry()

    @registry.scheduled_task(cron="0 3 * * *", timezone="America/New_York", timeout=600)
    async def cleanup(ctx: Context) -> str:
        return "cleaned"

    [cron_job] = registry.cron_jobs
    assert isinstance(cron_job, CronJob)
    assert cron_job.function is cleanup and cron_job.name == "cleanup"
    assert cron_job.cron == "0 3 * * *" and cron_job.tz == "America/New_York"
    assert cron_job.job_kwargs() == {"timeout": 600}
    assert cleanup.job_options == {"timeout": 600}
    assert registry.functions == [cleanup]


def test_stacked_schedules_share_one_task() -> None:
    registry = Registry()

    @registry.scheduled_task(cron="0 9 * * 1-5", timeout=60)
    @registry.scheduled_task(cron="0 12 * * 0,6")
    async def digest(ctx: Context) -> None:
        """Weekdays at nine, weekends at noon."""

    assert [c.cron for c in registry.cron_jobs] == ["0 12 * * 0,6", "0 9 * * 1-5"]
    assert registry.functions == [digest]
    assert digest.job_options == {}
    assert registry.cron_jobs[1].job_kwargs() == {"timeout": 60}


def test_scheduled_task_rejects_a_bad_expression_before_registering() -> None:
    registry = Registry()
    with pytest.raises(CronExpressionError) as raised:
        registry.scheduled_task(cron="0 0 * 13 *")
    assert raised.value.field == "month"
    with pytest.raises(ConfigurationError, match="Atlantis"):
        registry.scheduled_task(cron="@daily", timezone="Atlantis/Capital")
    assert registry.functions == [] and registry.cron_jobs == []


def test_include_merges_registries_from_several_modules() -> None:
    users, billing, app = Registry(), Registry(), Registry()
    users.add(add)

    @billing.scheduled_task(cron="@hourly")
    async def invoice(ctx: Context) -> None:
        """Bill."""

    app.include(users, billing)
    app.include(users)
    assert app.functions == [add, invoice]
    assert app.cron_jobs == billing.cron_jobs


def test_include_with_a_conflict_adds_nothing() -> None:
    first, second, app = Registry(), Registry(), Registry()
    first.add(add)

    @second.task(name="add")
    async def other_add(ctx: Context) -> int:
        return 0

    second.add(shout)
    with pytest.raises(ConfigurationError, match="other_add"):
        app.include(first, second)
    assert app.functions == []


async def test_a_worker_takes_a_registry_with_its_cron_jobs(queue: Queue) -> None:
    registry = Registry()
    registry.add(send_email)

    @registry.scheduled_task(cron="*/5 * * * *")
    async def poll(ctx: Context) -> None:
        """Poll."""

    worker = Worker(queue, registry, retention_s=None)
    assert set(worker.functions) == {"mail.send", "poll"}
    assert worker.functions["mail.send"] is send_email.fn
    assert [c.name for c in worker.cron_jobs] == ["poll"]


# Static typing: mypy checks the arguments of enqueue and apply.


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def test_correct_uses_of_task_handles_type_check(mypy_cache: Path) -> None:
    output, status = run_mypy([REPO / "tests" / "typecheck" / "task_handles.py"], mypy_cache)
    assert status == 0, output


def test_wrong_arguments_are_type_errors(tmp_path: Path, mypy_cache: Path) -> None:
    source = textwrap.dedent(
        """
        from conveyor.queue import Queue
        from conveyor.tasks import task
        from conveyor.types import Context


        @task(timeout=3)
        async def add(ctx: Context, *, a: int, b: int = 0) -> int:
            return a + b


        async def use(queue: Queue) -> None:
            await add.enqueue(queue, a="one")  # line 13: wrong type
            await add.enqueue(queue, c=1)  # line 14: wrong name
            text: str = await add.apply(queue, a=1)  # line 15: wrong result type
            await add.enqueue(queue, a=1, timeout=5)  # line 16: job field among arguments
            await add({}, a=1, b="2")  # line 17: direct call, wrong type
        """
    )
    wrong = tmp_path / "wrong_handles.py"
    wrong.write_text(source)
    output, status = run_mypy([wrong], mypy_cache)
    assert status == 1, output
    flagged = {int(line.split(":")[1]) for line in output.splitlines() if ": error:" in line}
    assert flagged == {13, 14, 15, 16, 17}, output
    assert 'Argument "a" to "enqueue" of "Task" has incompatible type "str"' in output
    assert 'Unexpected keyword argument "c"' in output
