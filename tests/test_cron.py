"""CronSchedule and CronJob: fire times users rely on, across time zones and DST."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conveyor.cron import CronJob, CronSchedule
from conveyor.errors import ConfigurationError, CronExpressionError
from conveyor.queue import Queue
from conveyor.tasks import task
from conveyor.worker import Worker
from conveyor.worker.scheduler import cron_ids


def fires_on_day(schedule: CronSchedule, zone: str, day: tuple[int, int, int]) -> list[str]:
    """Every fire on a local calendar day, as local ISO strings with their offsets."""
    tz = ZoneInfo(zone)
    start = datetime(*day, tzinfo=tz)
    end = (start + timedelta(days=1)).replace(tzinfo=tz)
    out = []
    instant = start.timestamp() - 1
    while (instant := schedule.next_after(instant)) < end.timestamp():
        out.append(datetime.fromtimestamp(instant, tz).isoformat())
    return out


BERLIN_SPRING = (2026, 3, 29)  # 02:00 CET -> 03:00 CEST
BERLIN_FALL = (2026, 10, 25)  # 03:00 CEST -> 02:00 CET
NEW_YORK_SPRING = (2026, 3, 8)  # 02:00 EST -> 03:00 EDT
NEW_YORK_FALL = (2026, 11, 1)  # 02:00 EDT -> 01:00 EST


@pytest.mark.parametrize(
    ("zone", "day", "expression", "expected"),
    [
        # Spring forward: a run inside the skipped hour runs when the clock jumps.
        ("Europe/Berlin", BERLIN_SPRING, "30 2 * * *", ["2026-03-29T03:00:00+02:00"]),
        ("Europe/Berlin", BERLIN_SPRING, "30 1 * * *", ["2026-03-29T01:30:00+01:00"]),
        ("Europe/Berlin", BERLIN_SPRING, "30 2 * * * 0", ["2026-03-29T03:00:00+02:00"]),
        ("America/New_York", NEW_YORK_SPRING, "30 2 * * *", ["2026-03-08T03:00:00-04:00"]),
        ("America/New_York", NEW_YORK_SPRING, "30 1 * * *", ["2026-03-08T01:30:00-05:00"]),
        ("America/New_York", NEW_YORK_SPRING, "30 2 * * * 0", ["2026-03-08T03:00:00-04:00"]),
        # Fall back: a fixed-time run inside the repeated hour runs once, the first time.
        ("Europe/Berlin", BERLIN_FALL, "30 2 * * *", ["2026-10-25T02:30:00+02:00"]),
        ("Europe/Berlin", BERLIN_FALL, "30 1 * * *", ["2026-10-25T01:30:00+02:00"]),
        ("Europe/Berlin", BERLIN_FALL, "30 2 * * * 0", ["2026-10-25T02:30:00+02:00"]),
        ("America/New_York", NEW_YORK_FALL, "30 1 * * *", ["2026-11-01T01:30:00-04:00"]),
        ("America/New_York", NEW_YORK_FALL, "30 2 * * *", ["2026-11-01T02:30:00-05:00"]),
        ("America/New_York", NEW_YORK_FALL, "30 1 * * * 0", ["2026-11-01T01:30:00-04:00"]),
        (
            "America/New_York",
            NEW_YORK_FALL,
            "0,30 1 * * *",
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
            ],
        ),
    ],
)
def test_daily_runs_across_dst(
    zone: str, day: tuple[int, int, int], expression: str, expected: list[str]
) -> None:
    assert fires_on_day(CronSchedule(expression, zone), zone, day) == expected


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", BERLIN_SPRING, 23),
        ("Europe/Berlin", BERLIN_FALL, 25),
        ("America/New_York", NEW_YORK_SPRING, 23),
        ("America/New_York", NEW_YORK_FALL, 25),
    ],
)
def test_interval_runs_every_30_real_minutes_through_dst(
    zone: str, day: tuple[int, int, int], hours: int
) -> None:
    schedule = CronSchedule("*/30 * * * *", zone)
    tz = ZoneInfo(zone)
    start = datetime(*day, tzinfo=tz).timestamp()
    fires = schedule.upcoming(start - 1, hours * 2)
    assert fires[0] == start
    assert all(b - a == 1800 for a, b in itertools.pairwise(fires))
    assert schedule.next_after(fires[-1]) == datetime(*day, tzinfo=tz).timestamp() + hours * 3600


def test_interval_fires_in_both_copies_of_the_repeated_hour() -> None:
    fires = fires_on_day(
        CronSchedule("*/30 * * * *", "Europe/Berlin"), "Europe/Berlin", BERLIN_FALL
    )
    assert fires[4:8] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ]


def test_seconds_run_once_per_wall_second_in_a_repeated_fixed_minute() -> None:
    fires = fires_on_day(
        CronSchedule("30 2 * * * */10", "Europe/Berlin"), "Europe/Berlin", BERLIN_FALL
    )
    assert fires == [f"2026-10-25T02:30:{s:02d}+02:00" for s in range(0, 60, 10)]


def test_a_scheduler_restarted_inside_the_repeated_hour_does_not_rerun() -> None:
    tz = ZoneInfo("Europe/Berlin")
    schedule = CronSchedule("30 2 * * *", tz)
    second_copy_0215 = datetime(2026, 10, 25, 2, 15, tzinfo=tz, fold=1)
    assert (
        schedule.next_after(second_copy_0215)
        == datetime(2026, 10, 26, 2, 30, tzinfo=tz).timestamp()
    )
    # The slot due then is the first 02:30, which already ran.
    second_copy_0245 = datetime(2026, 10, 25, 2, 45, tzinfo=tz, fold=1)
    first_0230 = datetime(2026, 10, 25, 2, 30, tzinfo=tz, fold=0).timestamp()
    assert schedule.previous_at_or_before(second_copy_0245) == first_0230


def test_previous_at_or_before_on_a_spring_forward_day() -> None:
    tz = ZoneInfo("America/New_York")
    schedule = CronSchedule("30 2 * * *", tz)
    jumped = datetime(2026, 3, 8, 3, 0, tzinfo=tz).timestamp()
    assert schedule.previous_at_or_before(jumped + 600) == jumped
    assert (
        schedule.previous_at_or_before(jumped - 1)
        == datetime(2026, 3, 7, 2, 30, tzinfo=tz).timestamp()
    )


def test_next_is_strictly_after_and_previous_includes_the_instant() -> None:
    schedule = CronSchedule("0 * * * *")
    ten = datetime(2026, 1, 1, 10, tzinfo=UTC).timestamp()
    assert schedule.next_after(ten) == ten + 3600
    assert schedule.next_after(ten - 0.5) == ten
    assert schedule.previous_at_or_before(ten) == ten
    assert schedule.previous_at_or_before(ten - 0.5) == ten - 3600
    assert schedule.previous_at_or_before(ten + 3599.9) == ten


def test_time_zone_moves_the_fire_time() -> None:
    base = datetime(2026, 6, 1, tzinfo=UTC)
    utc = CronSchedule("0 3 * * *").next_after(base)
    tokyo = CronSchedule("0 3 * * *", "Asia/Tokyo").next_after(base)
    assert datetime.fromtimestamp(utc, UTC).hour == 3
    assert datetime.fromtimestamp(tokyo, UTC).hour == 18  # 03:00 JST is 18:00 UTC
    assert CronSchedule("0 3 * * *", UTC).next_after(base) == utc


def test_datetimes_and_epochs_agree_and_naive_datetimes_are_refused() -> None:
    schedule = CronSchedule("*/15 * * * *", "Europe/Berlin")
    moment = datetime(2026, 5, 1, 12, 7, tzinfo=ZoneInfo("Europe/Berlin"))
    assert schedule.next_after(moment) == schedule.next_after(moment.timestamp())
    with pytest.raises(ValueError, match="naive"):
        schedule.next_after(datetime(2026, 5, 1, 12, 7))


def test_seconds_field_is_last() -> None:
    schedule = CronSchedule("* * * * * */5")
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()
    assert schedule.upcoming(noon, 3) == [noon + 5, noon + 10, noon + 15]
    at_second_30 = CronSchedule("0 12 * * * 30")
    assert at_second_30.next_after(noon) == noon + 30


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", datetime(2026, 1, 7, 11, tzinfo=UTC)),
        ("@daily", datetime(2026, 1, 8, tzinfo=UTC)),
        ("@midnight", datetime(2026, 1, 8, tzinfo=UTC)),
        ("@weekly", datetime(2026, 1, 11, tzinfo=UTC)),  # Sunday
        ("@monthly", datetime(2026, 2, 1, tzinfo=UTC)),
        ("@yearly", datetime(2027, 1, 1, tzinfo=UTC)),
        ("@annually", datetime(2027, 1, 1, tzinfo=UTC)),
        ("@DAILY", datetime(2026, 1, 8, tzinfo=UTC)),
    ],
)
def test_aliases(alias: str, expected: datetime) -> None:
    wednesday = datetime(2026, 1, 7, 10, 15, tzinfo=UTC)
    assert CronSchedule(alias).next_after(wednesday) == expected.timestamp()


@pytest.mark.parametrize(
    ("expression", "field", "detail"),
    [
        ("60 * * * *", "minute", "out of range 0-59"),
        ("*/0 * * * *", "minute", "step"),
        ("x * * * *", "minute", "'x'"),
        ("H * * * *", "minute", "H"),
        ("? * * * *", "minute", "'?'"),
        ("1-2-3 * * * *", "minute", "'1-2-3'"),
        ("* 24 * * *", "hour", "out of range 0-23"),
        ("* * 0 * *", "day of month", "out of range 1-31"),
        ("* * 32 * *", "day of month", "out of range 1-31"),
        ("* * 32W * *", "day of month", "32"),
        ("* * * 13 *", "month", "out of range 1-12"),
        ("* * * foo *", "month", "'foo'"),
        ("* * * * 8", "day of week", "out of range 0-7"),
        ("* * * * mon-xyz", "day of week", "'xyz'"),
        ("* * * * 5L", "day of week", "'5L'"),
        ("* * * * 1#9", "day of week", "9"),
        ("* * * * * 60", "second", "out of range 0-59"),
        ("* * * * * */0", "second", "step"),
        ("* * * * 1,", "day of week", "empty"),
    ],
)
def test_malformed_field_is_named(expression: str, field: str, detail: str) -> None:
    with pytest.raises(CronExpressionError) as raised:
        CronSchedule(expression)
    assert raised.value.field == field
    assert raised.value.expression == expression
    assert f"'{field}'" in str(raised.value)
    assert detail in str(raised.value)


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("* * * *", "got 4"),
        ("* * * * * * *", "got 7"),
        ("", "empty"),
        ("   ", "empty"),
        ("@fortnightly", "unknown alias"),
    ],
)
def test_malformed_shape(expression: str, detail: str) -> None:
    with pytest.raises(CronExpressionError, match=detail) as raised:
        CronSchedule(expression)
    assert raised.value.field is None


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 * 0"])
def test_expression_that_never_fires_is_rejected(expression: str) -> None:
    with pytest.raises(CronExpressionError, match="never fires"):
        CronSchedule(expression)


def test_rare_but_possible_dates_are_accepted() -> None:
    leap_day = CronSchedule("0 0 29 2 *")
    assert leap_day.next_after(datetime(2026, 1, 1, tzinfo=UTC)) == (
        datetime(2028, 2, 29, tzinfo=UTC).timestamp()
    )
    # Day of month OR day of week, as in every cron: the 30th of February never comes,
    # but Mondays of February do.
    feb_mondays = CronSchedule("0 0 30 2 1")
    assert feb_mondays.next_after(datetime(2026, 1, 1, tzinfo=UTC)) == (
        datetime(2026, 2, 2, tzinfo=UTC).timestamp()
    )


def test_names_special_forms_and_sunday_as_7() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday
    assert CronSchedule("0 9 * jan-mar mon-fri").next_after(start) == (
        datetime(2026, 1, 1, 9, tzinfo=UTC).timestamp()
    )
    assert CronSchedule("0 0 * * 7").next_after(start) == CronSchedule("0 0 * * 0").next_after(
        start
    )
    assert (
        CronSchedule("0 0 L * *").next_after(start) == datetime(2026, 1, 31, tzinfo=UTC).timestamp()
    )
    assert CronSchedule("0 0 * * 1#2").next_after(start) == (
        datetime(2026, 1, 12, tzinfo=UTC).timestamp()
    )


def test_unknown_time_zone_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Mars/Olympus"):
        CronSchedule("* * * * *", "Mars/Olympus")


def test_fixed_offset_zone_is_used_as_given() -> None:
    plus_two = timezone(timedelta(hours=2))
    fire = CronSchedule("0 3 * * *", plus_two).next_after(datetime(2026, 6, 1, tzinfo=UTC))
    assert fire == datetime(2026, 6, 1, 1, tzinfo=UTC).timestamp()


# CronJob


async def nightly(ctx: dict[str, Any]) -> None:
    """A plain task function."""


def test_cron_job_rejects_a_bad_expression_when_created() -> None:
    with pytest.raises(CronExpressionError) as raised:
        CronJob(nightly, cron="0 25 * * *")
    assert raised.value.field == "hour"
    with pytest.raises(CronExpressionError, match="never fires"):
        CronJob(nightly, cron="0 0 30 2 *")


def test_cron_job_rejects_an_unknown_zone_and_a_non_callable() -> None:
    with pytest.raises(ConfigurationError, match="Nowhere/City"):
        CronJob(nightly, cron="0 3 * * *", tz="Nowhere/City")
    with pytest.raises(ConfigurationError, match="not callable"):
        CronJob("nightly", cron="0 3 * * *")  # type: ignore[arg-type]


def test_cron_job_name_is_the_registered_name() -> None:
    assert CronJob(nightly, cron="@daily").name == "nightly"
    handle = task(name="reports.nightly")(nightly)
    assert CronJob(handle, cron="@daily").name == "reports.nightly"


def test_cron_job_own_zone_wins_over_the_workers() -> None:
    base = datetime(2026, 6, 1, tzinfo=UTC)
    own = CronJob(nightly, cron="0 3 * * *", tz="Asia/Tokyo")
    inherits = CronJob(nightly, cron="0 3 * * *")
    assert own.schedule("America/New_York").tz == ZoneInfo("Asia/Tokyo")
    assert inherits.schedule("America/New_York").tz == ZoneInfo("America/New_York")
    assert inherits.schedule(None).tz == ZoneInfo("UTC")
    new_york_3am = datetime(2026, 6, 1, 3, tzinfo=ZoneInfo("America/New_York")).timestamp()
    assert inherits.schedule(ZoneInfo("America/New_York")).next_after(base) == new_york_3am


def test_cron_job_kwargs_carry_only_what_was_set() -> None:
    assert CronJob(nightly, cron="@daily").job_kwargs() == {}
    cron_job = CronJob(
        nightly, cron="@daily", timeout=60, retries=3, retry_backoff=True, kwargs={"x": 1}
    )
    assert cron_job.job_kwargs() == {"timeout": 60, "retries": 3, "retry_backoff": True}
    assert cron_job.unique is True


def test_cron_job_kwargs_start_from_the_handles_options() -> None:
    handle = task(timeout=30, retries=2, ttl=100)(nightly)
    cron_job = CronJob(handle, cron="@daily", timeout=90)
    assert cron_job.job_kwargs() == {"timeout": 90, "retries": 2, "ttl": 100}
    # A handle's per-job options (key, scheduled) never leak into cron runs.
    bound = handle.options(key="fixed", scheduled=5)
    assert set(CronJob(bound, cron="@daily").job_kwargs()) == {"timeout", "retries", "ttl"}


@pytest.mark.parametrize(
    "tz",
    ["UTC", UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=7))],
)
@pytest.mark.parametrize("expression", ["0 3 * * *", "59 23 * * *", "0 0 * * *", "@daily"])
def test_daily_schedules_in_fixed_zones_agree_with_croniter(expression: str, tz: Any) -> None:
    # "M H * * *" in a zone without DST is computed without croniter (so an idle worker,
    # whose only cron job is the daily purge, never loads it); it must give croniter's slots.
    fast = CronSchedule(expression, tz)
    assert fast._daily is not None
    slow = CronSchedule(expression, tz)
    slow._daily = None
    start = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    probes = [start + offset for offset in range(0, 40 * 86400, 86400 // 7 + 13)]
    slots = [slow.next_after(start + day * 86400) for day in range(3)]
    probes += [t + delta for t in slots for delta in (-1, -0.001, 0, 0.001, 1)]
    for instant in probes:
        assert fast.next_after(instant) == slow.next_after(instant), instant
        assert fast.previous_at_or_before(instant) == slow.previous_at_or_before(instant), instant


def test_other_schedules_and_zones_with_dst_use_croniter() -> None:
    assert CronSchedule("0 3 * * *", "Europe/Berlin")._daily is None
    assert CronSchedule("*/5 3 * * *")._daily is None
    assert CronSchedule("0 3 * * 1")._daily is None
    assert CronSchedule("0 3 * * * 30")._daily is None


# Cron job identity: what tells several cron jobs of one function apart


async def report(ctx: dict[str, Any], *, region: str, tags: Any = None) -> None:
    """A task with several cron jobs."""


IDENTITY_PROGRAM = """
from conveyor.worker.scheduler import cron_ids
from tests.test_cron import several_report_cron_jobs
print(" ".join(cron_ids(several_report_cron_jobs(), "Europe/Berlin")))
"""


def several_report_cron_jobs() -> list[CronJob]:
    return [
        CronJob(report, cron="0 * * * *", kwargs={"region": "eu", "tags": {"a", "b", "c"}}),
        CronJob(report, cron="0 * * * *", kwargs={"region": "us", "tags": {"a", "b", "c"}}),
        CronJob(report, cron="30 * * * *", kwargs={"region": "eu", "tags": {"a", "b", "c"}}),
        CronJob(report, cron="0 * * * *", kwargs={"region": "eu"}, tz="Asia/Tokyo"),
    ]


def test_cron_ids_tell_cron_jobs_of_one_function_apart() -> None:
    ids = cron_ids([*several_report_cron_jobs(), CronJob(nightly, cron="@daily")], None)
    assert len(set(ids)) == 5
    assert all(cron_id.startswith("report#") for cron_id in ids[:4])
    assert ids[4] == "nightly"  # a function's only cron job keeps its name as its id


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_cron_ids_are_the_same_in_every_process(hash_seed: str) -> None:
    # str hashes (and so set order) are salted per process: ids must not depend on them.
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": f"{root / 'src'}:{root}"}
    result = subprocess.run(
        [sys.executable, "-c", IDENTITY_PROGRAM],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == cron_ids(several_report_cron_jobs(), "Europe/Berlin")


def test_identity_holds_the_expression_zone_and_kwargs_not_the_options() -> None:
    hourly = CronJob(report, cron="0 * * * *", kwargs={"region": "eu"})
    assert hourly.identity() == CronJob(report, cron="@hourly", kwargs={"region": "eu"}).identity()
    assert hourly.identity() == CronJob(
        report, cron="0 * * * *", kwargs={"region": "eu"}, timeout=5, unique=False
    ).identity("UTC")
    assert hourly.identity() != hourly.identity("Europe/Berlin")
    at_noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    as_date = CronJob(report, cron="@daily", kwargs={"region": at_noon})
    as_text = CronJob(report, cron="@daily", kwargs={"region": at_noon.isoformat()})
    assert as_date.identity() != as_text.identity()


def test_kwargs_without_a_stable_text_cannot_identify_a_cron_job() -> None:
    with pytest.raises(ConfigurationError, match="'report' cannot identify it"):
        CronJob(report, cron="@daily", kwargs={"region": object()}).identity()


def test_identical_cron_jobs_of_one_function_are_refused_when_the_worker_is_built() -> None:
    queue = Queue.from_url("memory://")
    twice = [
        CronJob(report, cron="0 * * * *", kwargs={"region": "eu"}),
        CronJob(report, cron="@hourly", kwargs={"region": "eu"}, timeout=60),
    ]
    with pytest.raises(ConfigurationError, match="'report'") as raised:
        Worker(queue, [], cron_jobs=twice)
    assert "identical" in str(raised.value)
    # The same object given twice is one cron job, not two.
    Worker(queue, [], cron_jobs=[twice[0], twice[0]])
