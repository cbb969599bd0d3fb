"""The Job model: SAQ's fields, defaults, durations, retry math and round trips."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid

import pytest

from conveyor.job import Job, Status, apply_defaults, next_retry_delay, now_ms


def test_to_dict_round_trip_keeps_defaults_replaceable() -> None:
    job = Job("f", kwargs={"a": 1}, timeout=30, key="k", meta={"m": 1})
    data = job.to_dict()
    assert "retries" not in data and data["timeout"] == 30
    loaded = Job.from_dict(data)
    assert dataclasses.asdict(loaded) == dataclasses.asdict(job)
    apply_defaults(loaded, {"timeout": 99, "retries": 4}, getattr)
    assert loaded.timeout == 30, "an explicit value wins over defaults"
    assert loaded.retries == 4, "a built-in default is replaced"


def test_from_dict_ignores_unknown_fields() -> None:
    job = Job.from_dict({"function": "f", "key": "k", "from_a_newer_version": True})
    assert job.function == "f" and job.key == "k"


def test_apply_defaults_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="not a job default"):
        apply_defaults(Job("f"), {"colour": "red"}, getattr)


def test_durations() -> None:
    job = Job("f", queued=1000, started=1500, completed=2500)
    assert job.duration("start") == 500
    assert job.duration("process") == 1000
    assert job.duration("total") == 1500
    assert Job("f").duration("total") is None
    with pytest.raises(ValueError, match="unknown duration kind"):
        job.duration("forever")


def test_stuck_and_retryable() -> None:
    old = now_ms() - 60_000
    assert Job("f", status=Status.ACTIVE, started=old, timeout=10).stuck
    assert not Job("f", status=Status.ACTIVE, started=now_ms(), timeout=10).stuck
    assert Job("f", status=Status.ACTIVE, started=now_ms(), touched=old, heartbeat=5).stuck
    assert not Job("f", status=Status.QUEUED, started=old).stuck
    assert Job("f", retries=2, attempts=1).retryable
    assert not Job("f", retries=2, attempts=2).retryable


def test_retry_delay_constant_and_backoff() -> None:
    assert Job("f", retry_delay=3.0, attempts=4).next_retry_delay() == 3.0
    for attempts in range(1, 8):
        delay = next_retry_delay(1.0, True, attempts)
        assert 0 <= delay <= 2 ** (attempts - 1)
    capped = [next_retry_delay(1.0, 5.0, 10) for _ in range(50)]
    assert max(capped) <= 5.0


def test_status_string_values_and_equality() -> None:
    assert Status("queued") is Status.QUEUED
    assert Job("f", status="active").status is Status.ACTIVE  # type: ignore[arg-type]
    assert Job("f", key="k") == Job("g", key="k")
    assert "function='f'" in repr(Job("f"))


def test_default_keys_are_time_ordered_version_7_uuids() -> None:
    before = time.time()
    keys = [Job("f").key for _ in range(1000)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        parsed = uuid.UUID(key)
        assert str(parsed) == key
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert int(before * 1000) <= parsed.int >> 80 <= int(time.time() * 1000)
    # Keys made in different milliseconds sort in creation order.
    stamps = [uuid.UUID(key).int >> 80 for key in keys]
    assert stamps == sorted(stamps)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_processes_make_different_keys() -> None:
    # Workers are forked from one parent: each must draw its own random bits.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its keys and leave at once
        os.close(read)
        os.write(write, "\n".join(Job("f").key for _ in range(200)).encode())
        os._exit(0)
    os.close(write)
    mine = {Job("f").key for _ in range(200)}
    with os.fdopen(read, "rb") as pipe:
        theirs = set(pipe.read().decode().split("\n"))
    os.waitpid(pid, 0)
    assert len(theirs) == 200 and not mine & theirs
    # The same millisecond and the same random state would give the same key.
    assert {key[15:] for key in mine}.isdisjoint(key[15:] for key in theirs)
