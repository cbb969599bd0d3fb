"""Creating and migrating the SQLite backend's schema, at ``connect()``.

The ``conveyor_migrations`` table records which numbered migrations a database has. A new
database gets ``schema.sql`` at once (and every migration recorded as applied); an existing
one gets the migrations it lacks, in order. Either way it happens in one ``BEGIN IMMEDIATE``
transaction, so several processes opening a new file together create it exactly once.
"""

from __future__ import annotations

import sqlite3
import time

from conveyor.backends.sqlite.operations import immediate
from conveyor.backends.sqlite.sql import Migration, load_migrations, read_text, statements
from conveyor.errors import ConfigurationError


def migrate(
    conn: sqlite3.Connection, queries: dict[str, str], *, use_schema: bool = True
) -> list[int]:
    """Bring the database to the newest schema.

    Args:
        conn: A connection in autocommit mode.
        queries: The named queries of ``queries.sql``.
        use_schema: Create a new database from ``schema.sql`` (the normal road); False
            replays every migration instead (the road that tests compare with it).

    Returns:
        The versions this call recorded (empty when the database was up to date).

    Raises:
        ConfigurationError: When the database was migrated by a newer Conveyor.
    """
    migrations = load_migrations()
    with immediate(conn):
        conn.execute(queries["create_migrations_table"])
        applied = {version for (version,) in conn.execute(queries["applied_migrations"])}
        newer = sorted(applied - {m.version for m in migrations})
        if newer:
            raise ConfigurationError(
                f"the SQLite database has schema version {newer[-1]}, newer than this "
                f"version of conveyor knows ({migrations[-1].version}); upgrade conveyor"
            )
        (tables,) = conn.execute(queries["table_exists"], {"name": "jobs"}).fetchone()
        if use_schema and not applied and not tables:
            _run_script(conn, read_text("schema.sql"))
            pending = migrations
        else:
            pending = [m for m in migrations if m.version not in applied]
            for migration in pending:
                _run_script(conn, migration.script)
        for migration in pending:
            _record(conn, queries, migration)
    return [m.version for m in pending]


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in statements(script):
        conn.execute(statement)


def _record(conn: sqlite3.Connection, queries: dict[str, str], migration: Migration) -> None:
    conn.execute(
        queries["record_migration"],
        {"version": migration.version, "name": migration.name, "now": time.time()},
    )
