"""expire_dead_leases: a dead worker's leases end when its session is gone, a live one's never.

A worker process killed with SIGKILL loses its presence lock with its session, and its
leases end long before they expire. A worker whose lock is held, or who keeps renewing while
its presence connection is replaced, keeps them; so does a worker without presence lock
(poll mode); and a sweeper whose own session is younger than the grace (as after a restart
of the server) ends nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import conveyor
from backends import test_postgres
from backends.test_postgres import Factory, _job
from conveyor.backends.base import Lease, Renewal
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.presence import SETTLED_S, SILENT_S, Presence
from conveyor.testing import wait_until

url = test_postgres.url
schema = test_postgres.schema
admin = test_postgres.admin
make = test_postgres.make

#: A worker process that claims jobs, says which, then hangs until it is killed.
CLAIMER = """
import asyncio, json, sys, time
from conveyor.backends.postgres import PostgresBackend

async def main():
    backend = PostgresBackend.from_url(sys.argv[1], "main")
    await backend.connect()
    rows = await backend.claim("doomed", int(sys.argv[2]), float(sys.argv[3]), time.time())
    print(json.dumps([row.key for row in rows]), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _presence(backend: PostgresBackend) -> Presence:
    assert backend._presence is not None
    return backend._presence


async def _sweeper(make: Factory, admin: Any, older_than: float) -> PostgresBackend:
    """A backend whose presence session has lived ``older_than`` seconds."""
    sweeper = await make()
    assert await sweeper.expire_dead_leases(time.time()) == 0  # starts its presence session
    await wait_until(lambda: _presence(sweeper).pid is not None, message="presence session")

    async def old_enough() -> bool:
        cur = await admin.execute(
            "SELECT extract(epoch FROM now() - backend_start) > %s FROM pg_stat_activity"
            " WHERE pid = %s",
            (older_than, _presence(sweeper).pid),
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    await wait_until(old_enough, message="the sweeper's session is old enough")
    return sweeper


async def _leases(admin: Any, schema: str) -> dict[str, float]:
    cur = await admin.execute(
        f"""SELECT key, lease_until FROM "{schema}".jobs WHERE status = 'active'"""
    )
    return {row[0]: row[1] for row in await cur.fetchall()}


async def test_a_killed_workers_leases_end_long_before_they_expire(
    url: str, admin: Any, schema: str, make: Factory
) -> None:
    lease_s = 8.0
    sweeper = await _sweeper(make, admin, older_than=SETTLED_S)
    await sweeper.enqueue([_job(f"j{i}") for i in range(3)])
    env = {**os.environ, "PYTHONPATH": str(Path(conveyor.__file__).parents[1])}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLAIMER, url, "2", str(lease_s),
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        claimed = json.loads(await asyncio.wait_for(child.stdout.readline(), 30))
        assert claimed == ["j0", "j1"]
        expires = min((await _leases(admin, schema)).values())
        child.send_signal(signal.SIGKILL)
        await child.wait()

        async def ended() -> bool:
            return await sweeper.expire_dead_leases(time.time()) == 2

        await wait_until(ended, timeout=30, message="the dead worker's leases ended")
        assert time.time() < expires  # long before they would have expired
        assert await _leases(admin, schema) == {"j0": 0.0, "j1": 0.0}
        recovered = await sweeper.recover("sweeper", 10, 30, time.time())
        assert sorted(row.key for row in recovered) == claimed
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_a_live_workers_leases_never_end(admin: Any, schema: str, make: Factory) -> None:
    sweeper = await _sweeper(make, admin, older_than=SETTLED_S)
    worker = await make()
    await worker.enqueue([_job("a"), _job("b")])
    t0 = time.time()
    rows = await worker.claim("alive", 2, 30, t0)
    silent = t0 + SILENT_S + 0.5  # silent long enough, long before the lease's end
    # Its presence lock is held: however long it was silent, its leases stay.
    assert await sweeper.expire_dead_leases(silent) == 0
    # Its presence connection is killed and replaced; meanwhile it renews: they stay.
    old_pid = _presence(worker).pid
    await admin.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    leases = [Lease(row.key, row.token or "") for row in rows]
    assert await worker.renew("alive", leases, 30, silent) == Renewal()
    assert await sweeper.expire_dead_leases(silent + 0.5) == 0
    await wait_until(
        lambda: _presence(worker).pid not in (None, old_pid) and _presence(worker).held("alive"),
        message="the presence lock taken again",
    )
    # Its next renewal marks the leases as vouched for again (the one above may have run
    # before or after the presence connection was seen gone: either is right).
    assert await worker.renew("alive", leases, 30, silent) == Renewal()
    later = silent + SILENT_S + 0.5
    assert await sweeper.expire_dead_leases(later) == 0  # silent again, but its lock is held
    # Its session gone for good and silent for a third of its lease: it is dead.
    await _presence(worker).stop()

    async def ended() -> bool:
        return await sweeper.expire_dead_leases(later) == 2

    await wait_until(ended, message="the leases ended once the session is gone")
    assert set(await _leases(admin, schema)) == {"a", "b"}
    assert all(until == 0 for until in (await _leases(admin, schema)).values())
    # Until someone recovers the jobs, the owner's lease still works.
    assert await worker.renew("alive", leases, 30, time.time()) == Renewal()


async def test_a_worker_without_presence_waits_for_its_leases_to_expire(
    url: str, admin: Any, make: Factory
) -> None:
    sweeper = await _sweeper(make, admin, older_than=SETTLED_S)
    polling = await make(poll_interval=0.5)  # no presence lock in poll mode
    await polling.enqueue([_job("a")])
    t0 = time.time()
    await polling.claim("polling", 1, 30, t0)
    silent = t0 + SILENT_S + 0.5
    assert await sweeper.expire_dead_leases(silent) == 0
    assert await polling.expire_dead_leases(silent) == 0


async def test_a_young_sweeper_ends_nothing(admin: Any, make: Factory) -> None:
    # As after a restart of the server: the sweeper's own session is new, so live workers
    # may not have connected and renewed yet.
    worker = await make()
    await worker.enqueue([_job("a")])
    t0 = time.time()
    await worker.claim("gone", 1, 30, t0)
    await _presence(worker).stop()
    silent = t0 + SILENT_S + 0.5
    sweeper = await make()
    assert await sweeper.expire_dead_leases(silent) == 0
    await wait_until(lambda: _presence(sweeper).pid is not None, message="presence session")
    assert await sweeper.expire_dead_leases(silent) == 0  # its session is too young

    async def ended() -> bool:
        return await sweeper.expire_dead_leases(silent) == 1

    await wait_until(ended, message=f"ended once the sweeper's session is {SETTLED_S} s old")


async def test_the_first_claim_of_a_worker_is_vouched_for(
    admin: Any, schema: str, make: Factory
) -> None:
    # A worker's first claim and first recovery run at once (its claim loop and its sweep
    # start together): both wait for its presence lock, so the rows they take are marked
    # and a worker killed right after its first claim is found dead.
    worker = await make()
    await worker.enqueue([_job("a")])
    recovered, rows = await asyncio.gather(
        worker.recover("new", 1, 30, time.time()), worker.claim("new", 1, 30, time.time())
    )
    assert [row.key for row in rows] == ["a"] and recovered == []
    cur = await admin.execute(f'SELECT owner_present FROM "{schema}".jobs')
    assert await cur.fetchall() == [(True,)]
