"""Enqueue on PostgreSQL: every statement the backend picks keeps the same promises.

One job at a time (``enqueue_job``), batches of JSON payloads as joined text
(``enqueue_jobs``), batches larger than a chunk (pipelined in one transaction), and the
array statement for once-marks and payloads that are not JSON: keys, types and columns come
back as given, the server's refusal of a payload sent unchecked loses nothing, a failing
batch stores nothing, and waiting workers wake.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from backends import test_postgres
from backends.test_postgres import LONG_WAIT, WOKEN_WITHIN, Factory, _done, _job
from conveyor.backends.base import NewJob
from conveyor.backends.postgres.config import split_url
from conveyor.backends.postgres.enqueue import CHUNK, NULL_GROUP, SEPARATOR, joined_params
from conveyor.errors import BackendError
from conveyor.testing import wait_until

# The fixtures of test_postgres: a URL with its own schema, an admin connection, backends.
url = test_postgres.url
schema = test_postgres.schema
admin = test_postgres.admin
make = test_postgres.make

PAYLOADS: dict[str, bytes | str] = {
    "json-str": '{"b":[1,2],"a":"x"}',
    "json-bytes": b'{"a":1}',
    "json-unicode": '{"name":"Zoë ☃"}',
    "json-unicode-bytes": '{"name":"Zoë"}'.encode(),
    "pickle-like": b"\x80\x04\x95\x00binary\xff",
    "text": "not json at all",
    "brace-text": "{not json either",
    "nan": '{"x":NaN}',
    "nul-escape": '{"x":"\\u0000"}',
    "lone-surrogate": '{"x":"\udc80"}',
    "separator": '{"x":"a\x1fb"}',  # a raw control character: not JSON
}


def _same(key: str, got: bytes | str, given: bytes | str) -> None:
    assert type(got) is type(given), key
    if key.startswith("json"):
        assert json.loads(got) == json.loads(given), key
    else:
        assert got == given, key


async def test_one_at_a_time_every_payload_keeps_its_type(make: Factory) -> None:
    backend = await make()
    for key, payload in PAYLOADS.items():
        assert await backend.enqueue([_job(key, payload)]) == [True], key
    rows = {row.key: row for row in await backend.get(list(PAYLOADS)) if row}
    for key, payload in PAYLOADS.items():
        _same(key, rows[key].payload, payload)


@pytest.mark.parametrize("prepare_threshold", [5, None], ids=["prepared", "pgbouncer"])
async def test_a_payload_the_server_refuses_in_a_large_batch_loses_nothing(
    make: Factory, prepare_threshold: int | None
) -> None:
    backend = await make(prepare_threshold=prepare_threshold)
    jobs = [_job(f"k{i}", f'{{"i":{i}}}') for i in range(CHUNK + 500)]
    jobs[CHUNK + 100] = _job("refused", '{"x":NaN}')  # in the second chunk
    assert await backend.enqueue(jobs) == [True] * len(jobs)
    [refused, last] = await backend.get(["refused", f"k{CHUNK + 499}"])
    assert refused is not None and refused.payload == '{"x":NaN}'
    assert last is not None and json.loads(last.payload) == {"i": CHUNK + 499}
    assert await backend.count(["queued"]) == {"queued": len(jobs)}


async def test_large_batch_dedups_keeps_columns_and_replaces_finished_jobs(
    make: Factory, admin: Any, schema: str
) -> None:
    backend = await make()
    assert await backend.enqueue([_job("running"), _job("finished")]) == [True, True]
    rows = {row.key: row for row in await backend.claim("w", 2, 30, time.time())}
    await backend.finish([_done("finished", rows["finished"].run_id)])
    now = time.time()
    jobs = [
        _job(f"j{i}", priority=i % 3, group_key=f"g{i}" if i % 2 else None)
        for i in range(2 * CHUNK + 10)
    ]
    jobs[1500] = _job("running")  # incomplete: not inserted
    jobs[1600] = _job("finished", '{"again":1}')  # finished: replaced
    jobs[1700] = _job("j3")  # a repeat within the batch: the first one wins
    jobs[5] = _job("later", due=now + 3600, priority=-1)
    result = await backend.enqueue(jobs)
    after = time.time()
    assert [i for i, inserted in enumerate(result) if not inserted] == [1500, 1700]
    [again] = await backend.get(["finished"])
    assert again is not None and again.status == "queued"
    assert json.loads(again.payload) == {"again": 1}
    cur = await admin.execute(
        f"""SELECT key, priority, due, group_key, ready_at FROM "{schema}".jobs
        WHERE key = ANY(%s) ORDER BY key""",
        (["j3", "j4", "later"],),
    )
    stored = {row[0]: row[1:] for row in await cur.fetchall()}
    assert stored["later"] == (-1, jobs[5].due, None, jobs[5].due)
    for key, priority, group_key in (("j3", 0, "g3"), ("j4", 1, None)):
        assert stored[key][:3] == (priority, 0.0, group_key)
        assert now <= stored[key][3] <= after  # due at once: in order from the time of the call
    assert await backend._next_due() == jobs[5].due  # the idle wait finds the scheduled job
    # Priority 0 first, then insertion order; the scheduled job is not due yet.
    assert [row.key for row in await backend.claim("w", 3, 30, after)] == ["j0", "j3", "j6"]
    [first] = await backend.claim("w", 1, 30, now + 7200)
    assert first.key == "later"


async def test_values_holding_the_separators_travel_intact(make: Factory) -> None:
    backend = await make()
    jobs = [
        _job(f"key{SEPARATOR}one"),
        _job("plain", group_key=NULL_GROUP),
        _job("other", group_key=f"g{SEPARATOR}"),
    ]
    assert joined_params(jobs, time.time()) is None  # these go as arrays
    assert await backend.enqueue(jobs) == [True, True, True]
    assert await backend.enqueue([_job(f"key{SEPARATOR}one")]) == [False]
    claimed = await backend.claim("w", 3, 30, time.time())
    assert sorted(row.key for row in claimed) == sorted(job.key for job in jobs)


async def test_a_failing_large_batch_stores_nothing(make: Factory) -> None:
    backend = await make()
    jobs = [_job(f"k{i}") for i in range(CHUNK + 10)]
    jobs[-1] = _job("too-urgent", priority=2**40)  # out of the integer column's range
    with pytest.raises(BackendError, match="enqueue failed"):
        await backend.enqueue(jobs)
    assert await backend.count(["queued"]) == {"queued": 0}
    assert await backend.enqueue(jobs[:-1]) == [True] * (len(jobs) - 1)


async def test_once_marks_hold_in_a_large_batch(make: Factory) -> None:
    backend = await make()
    jobs = [_job(f"k{i}") for i in range(CHUNK + 10)]
    jobs[3] = _job("cron-a", once="slot", once_ttl=60)
    jobs[CHUNK + 5] = _job("cron-b", once="slot", once_ttl=60)
    result = await backend.enqueue(jobs)
    assert result[3] is True and result[CHUNK + 5] is False and result.count(False) == 1
    assert await backend.enqueue([_job("cron-c", once="slot", once_ttl=60)]) == [False]


async def test_batches_wake_a_waiting_worker(make: Factory) -> None:
    worker = await make()
    producer = await make()
    await worker.wait_for_work(0)
    batches = [
        [_job("one")],
        [_job("two"), _job("three")],
        [_job(f"k{i}") for i in range(CHUNK + 1)],
    ]
    for jobs in batches:
        await wait_until(lambda: worker.listening, message="listening")
        while await worker.claim("w", 10_000, 30, time.time()):
            pass
        waiter = asyncio.ensure_future(worker.wait_for_work(LONG_WAIT))
        await asyncio.sleep(0)
        assert not waiter.done()
        await producer.enqueue(jobs)
        await asyncio.wait_for(waiter, WOKEN_WITHIN)


async def test_transactional_batch_follows_the_callers_transaction(url: str, make: Factory) -> None:
    backend = await make()
    conninfo, _ = split_url(url)
    jobs = [_job(f"k{i}", PAYLOADS["text"] if i == 1 else '{"i":1}') for i in range(3)]
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        assert await backend.enqueue(jobs, connection=conn) == [True] * 3
        await conn.rollback()
        assert await backend.enqueue(jobs[:2], connection=conn) == [True, True]
        await conn.commit()
    rows: list[Any] = await backend.get([job.key for job in jobs])
    assert [row is not None for row in rows] == [True, True, False]
    assert rows[1].payload == PAYLOADS["text"]


async def test_jobs_from_a_generator_are_read_as_they_are_sent(make: Factory) -> None:
    backend = await make()
    taken: list[str] = []

    def jobs(prefix: str, count: int, fail_at: int = -1) -> Iterator[NewJob]:
        for i in range(count):
            if i == fail_at:
                raise ValueError("cannot serialize job")
            taken.append(f"{prefix}{i}")
            yield _job(f"{prefix}{i}", f'{{"i":{i}}}')

    assert await backend.enqueue(jobs("a", 2 * CHUNK + 1)) == [True] * (2 * CHUNK + 1)
    # A generator that fails after two chunks were sent: nothing of the call is stored.
    with pytest.raises(ValueError, match="cannot serialize"):
        await backend.enqueue(jobs("b", 3 * CHUNK, fail_at=2 * CHUNK + 5))
    assert len(taken) == 4 * CHUNK + 6
    assert await backend.count(["queued"]) == {"queued": 2 * CHUNK + 1}
    assert await backend.enqueue(iter([])) == []
    assert await backend.enqueue([_job("b0")]) == [True]  # the pool still works
