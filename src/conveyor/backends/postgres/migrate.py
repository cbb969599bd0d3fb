"""Creating and upgrading the schema with numbered migrations.

Each ``migrations/NNNN_name.sql`` runs once, recorded in ``<schema>.schema_version``. The
upgrade runs in one transaction that first takes a transaction-scoped advisory lock on the
schema's name, so two processes connecting at once queue up: the second waits, then finds
nothing left to do. The lock is released at commit or rollback and never stays on a pooled
connection.

A DBA who does not let the application create tables applies :func:`migration_sql` by hand
(``python -m conveyor.backends.postgres --schema NAME``).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from conveyor.backends.postgres.sqlfiles import Migration, SqlFiles, check_schema_name, load


def _versioned(migration: Migration, files: SqlFiles) -> str:
    record = (
        files.queries["record_version"]
        .replace("{{version}}", str(migration.version))
        .replace("{{migration}}", migration.name)
    )
    return f"-- {migration.name}\n{migration.sql.strip()}\n\n{record};\n"


def migration_sql(schema: str = "conveyor", from_version: int = 0) -> str:
    """The SQL that creates (or upgrades) the schema, for a DBA to apply by hand.

    Args:
        schema: The schema the application is configured with (``?schema=`` in its URL).
        from_version: The version already applied (``SELECT max(version) FROM
            <schema>.schema_version``); 0 for a new database.

    Returns:
        One transaction: lock, create the schema and its version table, then each
        migration after ``from_version`` with its version row.
    """
    files = load(check_schema_name(schema))
    q = files.queries
    parts = [
        "BEGIN;",
        f"{q['migration_lock']};",
        f"{q['create_schema']};",
        f"{q['create_version_table']};",
        "",
    ]
    parts += [_versioned(m, files) for m in files.migrations if m.version > from_version]
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"


async def current_version(conn: AsyncConnection[Any], files: SqlFiles) -> int:
    """The schema's applied version; 0 when it was never migrated."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(files.queries["version_table"])
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    await cur.execute(files.queries["current_version"])
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: AsyncConnection[Any], files: SqlFiles) -> list[str]:
    """Apply the migrations the schema lacks, under the migration lock.

    Args:
        conn: A connection outside any transaction.
        files: The backend's SQL.

    Returns:
        The names of the migrations applied (empty when already current).
    """
    async with conn.transaction():  # committed at once, even on a non-autocommit connection
        version = await current_version(conn, files)
    if version >= files.latest_version:
        return []  # the common case: no lock, no DDL (works without CREATE privileges)
    q = files.queries
    applied: list[str] = []
    async with conn.transaction():
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute(q["migration_lock"], prepare=False)
        await cur.execute(q["create_schema"], prepare=False)
        await cur.execute(q["create_version_table"], prepare=False)
        await cur.execute(q["current_version"], prepare=False)
        row = await cur.fetchone()
        done = int(row[0]) if row else 0
        for migration in files.migrations:
            if migration.version > done:
                await cur.execute(_versioned(migration, files), prepare=False)
                applied.append(migration.name)
    return applied
