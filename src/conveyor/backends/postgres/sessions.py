"""The connections that need a server session of their own: LISTEN and the presence locks.

A pooled connection cannot keep either (the pool hands it to someone else), so the backend
opens them beside its pool: with the pool's URL when that reaches PostgreSQL itself, with
``direct_url`` when the pool goes through PgBouncer in transaction mode (PgBouncer hands
the server session to another client after every transaction: a LISTEN would hear another
client's channel, a lock would be held for whoever gets the session next).

A direct connection must reach the server and the database that the pool reaches: a LISTEN
on another server hears no NOTIFY, and locks held there vouch for nobody. So each new one
is checked against the pool (``server_identity``) before it is used; one that reaches
elsewhere is closed and counts as a failed connect (logged; LISTEN and presence retry
with their backoff, workers poll meanwhile, and no lease is vouched for).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

from conveyor.backends.postgres.config import Settings
from conveyor.backends.postgres.database import Database
from conveyor.errors import BackendError

Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


async def session_connector(db: Database, settings: Settings, identity_query: str) -> Connect:
    """How the backend opens a connection of its own (autocommit, outside the pool).

    Args:
        db: The backend's database (its pool's URL, and the pool to compare a direct
            connection with).
        settings: The backend's settings (``direct_url``).
        identity_query: The ``server_identity`` query.
    """
    if not settings.direct_url:
        conninfo, kwargs = await db.conninfo()
        kwargs["autocommit"] = True

        async def pooled_url() -> psycopg.AsyncConnection[Any]:
            return await psycopg.AsyncConnection.connect(conninfo, **kwargs)

        return pooled_url

    direct = settings.direct_url
    options: dict[str, Any] = {"autocommit": True}
    if "application_name" not in conninfo_to_dict(direct):
        options["application_name"] = settings.application_name

    async def direct_url() -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(direct, **options)
        try:
            cur = await conn.cursor(row_factory=tuple_row).execute(identity_query)
            reached = await cur.fetchone()
            expected = await db.fetch("server_identity", identity_query, {})
            if not expected or reached != expected[0]:
                raise psycopg.OperationalError(
                    f"direct_url reaches database {_named(reached)}, the queue's URL "
                    f"{_named(expected[0] if expected else None)}: point direct_url at the "
                    "server and database behind PgBouncer"
                )
        except BackendError as exc:  # from the pool: the callers retry psycopg's errors
            await conn.close()
            raise psycopg.OperationalError(f"cannot check direct_url: {exc}") from exc
        except BaseException:
            await conn.close()
            raise
        return conn

    return direct_url


def _named(identity: tuple[Any, ...] | None) -> str:
    if identity is None:
        return "(unknown)"
    started = datetime.fromtimestamp(float(identity[1]), UTC).isoformat(timespec="seconds")
    return f"{identity[0]!r} of the server started at {started}"
