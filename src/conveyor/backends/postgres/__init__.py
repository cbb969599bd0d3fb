"""The PostgreSQL backend (``pip install "conveyor[postgres]"``).

Tables live in one schema (``?schema=``, default ``conveyor``), created and upgraded by the
numbered migrations in ``migrations/`` when a backend connects; :func:`migration_sql` gives
the same SQL for a DBA to apply by hand.
"""

from conveyor.backends.postgres.backend import PostgresBackend
from conveyor.backends.postgres.migrate import migration_sql

__all__ = ["PostgresBackend", "migration_sql"]
