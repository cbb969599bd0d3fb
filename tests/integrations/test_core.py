"""The framework-neutral core: QueueConfig and the Conveyor holder."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigurationError, CronJob, Queue, Registry, Worker, task
from conveyor.integrations import Conveyor, QueueConfig
from conveyor.testing.backends import isolated_url


async def add(ctx: dict[str, Any], *, a: int, b: int) -> int:
    return a + b


async def shout(ctx: dict[str, Any], *, text: str) -> str:
    return text.upper()


@task(timeout=45)
async def report(ctx: dict[str, Any]) -> str:
    return "report"


async def other_add(ctx: dict[str, Any], *, a: int) -> int:
    return a


def test_a_queue_config_is_a_worker_settings_dict(tmp_path: Path) -> None:
    registry = Registry()
    registry.add(report)
    digest = CronJob(shout, cron="0 7 * * *", kwargs={"text": "digest"})
    config = QueueConfig(
        "emails",
        url=isolated_url("sqlite", tmp_path),
        tasks=[add, registry],
        scheduled_tasks=[digest],
        cron_tz="America/New_York",
        concurrency=3,
        shutdown_grace_period_s=2,
    )
    assert config.queue.name == "emails"
    assert config.task_names == ["add", "report", "shout"]
    worker = Worker(**config.settings())
    assert worker.concurrency == 3 and worker.shutdown_grace_period_s == 2
    assert set(worker.functions) >= {"add", "report", "shout"}
    assert digest in worker.cron_jobs


def test_a_registry_alone_brings_its_cron_jobs(tmp_path: Path) -> None:
    registry = Registry()
    registry.scheduled_task("0 3 * * *")(shout)
    config = QueueConfig(url=isolated_url("sqlite", tmp_path), tasks=registry)
    assert config.name == "default" and config.task_names == ["shout"]
    assert [cron.name for cron in config.cron_jobs] == ["shout"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "memory://", "queue": Queue.from_url("memory://")}, "not both"),
        ({"queue": Queue.from_url("memory://", name="other")}, "named 'other'"),
        ({"concurency": 3}, "'concurency' (did you mean 'concurrency'?)"),
        ({"functions": [add]}, "'functions' (use tasks=)"),
        ({"cron_jobs": []}, "'cron_jobs' (use scheduled_tasks=)"),
        ({"tasks": [add, ("add", other_add)]}, "two functions are registered as 'add'"),
    ],
)
def test_a_queue_config_names_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^queue 'default': ") as caught:
        QueueConfig("default", **kwargs)
    assert message in str(caught.value)


def test_conveyor_refuses_ambiguous_queues_and_task_names() -> None:
    with pytest.raises(ConfigurationError, match="two queues are named 'a'"):
        Conveyor([QueueConfig("a", url="memory://"), QueueConfig("a", url="memory://")])
    with pytest.raises(ConfigurationError, match="task 'add' is a different function"):
        Conveyor(
            [
                QueueConfig("a", url="memory://", tasks=[add]),
                QueueConfig("b", url="memory://", tasks=[("add", other_add)]),
            ]
        )
    with pytest.raises(ConfigurationError, match=r"run_workers names unknown queues \['c'\]"):
        Conveyor(QueueConfig("a", url="memory://"), run_workers=["c"])
    with pytest.raises(ConfigurationError, match="at least one"):
        Conveyor([])


def test_queues_are_found_by_name() -> None:
    conveyor = Conveyor(
        [
            QueueConfig("default", url="memory://", tasks=[add]),
            QueueConfig("emails", url="memory://", tasks=[shout, add]),
        ]
    )
    assert conveyor.queue().name == "default"
    assert conveyor.queue("emails").name == "emails"
    assert conveyor.task_queues == {"add": "default", "shout": "emails"}
    with pytest.raises(ConfigurationError, match="no queue named 'sms'; the queues are default"):
        conveyor.queue("sms")
    assert conveyor.worker_settings("emails")["queue"] is conveyor.queue("emails")
    only = Conveyor(QueueConfig("emails", url="memory://"))
    assert only.default_queue == "emails"


async def test_startup_connects_every_queue_and_shutdown_disconnects_them(
    tmp_path: Path,
) -> None:
    mine = Queue.from_url(isolated_url("sqlite", tmp_path), name="mine")
    await mine.connect()
    conveyor = Conveyor(
        [
            QueueConfig("default", url=isolated_url("sqlite", tmp_path), tasks=[add]),
            QueueConfig("mine", queue=mine, tasks=[shout]),
        ]
    )
    async with conveyor.lifespan(object()) as state:
        assert state == {"conveyor": conveyor, "queue": conveyor.queue("default")}
        assert all(queue._connected for queue in conveyor.queues)
        assert conveyor.workers == []
        assert {q.name for q in conveyor.admin.queues} == {"default", "mine"}
    assert not conveyor.queue("default")._connected
    assert mine._connected, "a queue connected before startup stays connected"
    await mine.disconnect()


async def test_workers_run_inside_the_web_process_only_when_asked(tmp_path: Path) -> None:
    url = isolated_url("sqlite", tmp_path)
    conveyor = Conveyor(
        [
            QueueConfig("default", url=url, tasks=[add], timers={"abort": 0.1}),
            QueueConfig("emails", url=url, tasks=[shout]),
        ],
        run_workers=["default"],
    )
    async with conveyor:
        assert [worker.queue.name for worker in conveyor.workers] == ["default"]
        assert await conveyor.queue("default").apply("add", a=2, b=3, timeout=20) == 5
        running = conveyor.workers[0]
    assert conveyor.workers == []
    assert running._stopped.is_set()


async def test_the_admin_knows_each_queue_and_its_zones(tmp_path: Path) -> None:
    url = isolated_url("sqlite", tmp_path)
    conveyor = Conveyor(
        [
            QueueConfig(
                "default",
                url=url,
                tasks=[report],
                scheduled_tasks=[CronJob(add, cron="0 9 * * *", kwargs={"a": 1, "b": 2})],
                cron_tz="Europe/Berlin",
            ),
            QueueConfig(
                "emails",
                url=url,
                scheduled_tasks=[CronJob(shout, cron="0 7 * * *", kwargs={"text": "x"})],
                cron_tz="America/New_York",
            ),
        ]
    )
    async with conveyor:
        entries = {(e.queue, e.name): e.tz for e in await conveyor.admin.cron()}
        assert entries[("default", "add")] == "Europe/Berlin"
        assert entries[("emails", "shout")] == "America/New_York"
        key = await conveyor.admin.enqueue("report", {})
        job = await conveyor.queue("default").job(key)
        assert job is not None and job.timeout == 45, "the handle's options apply"


async def test_a_worker_that_fails_to_start_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(ctx: dict[str, Any]) -> None:
        raise RuntimeError("no database")

    conveyor = Conveyor(
        QueueConfig(url=isolated_url("sqlite", tmp_path), tasks=[add], startup=broken),
        run_workers=True,
    )
    async with conveyor:
        task_ = conveyor._worker_tasks[0]
        await asyncio.wait({task_})
        assert "a worker inside the web process stopped" in caplog.text
        assert "no database" in caplog.text


async def test_a_failed_startup_disconnects_what_it_connected(tmp_path: Path) -> None:
    broken = Queue.from_url("memory://", name="broken")

    async def refuse() -> None:
        raise ConnectionRefusedError("no server")

    broken.connect = refuse  # type: ignore[method-assign]
    conveyor = Conveyor(
        [
            QueueConfig("default", url=isolated_url("sqlite", tmp_path), tasks=[add]),
            QueueConfig("broken", queue=broken),
        ],
        run_workers="default",
    )
    assert conveyor.run_workers == ["default"]
    with pytest.raises(ConnectionRefusedError):
        async with conveyor.lifespan():
            pytest.fail("the application must not start")
    assert not conveyor.queue("default")._connected
    assert conveyor.workers == []
