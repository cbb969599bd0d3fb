"""PostgreSQL queues: URL options, your own connection pool, PgBouncer."""

from typing import Any

from conveyor import Queue
from psycopg_pool import AsyncConnectionPool

# --8<-- [start:urls]
# Tables in the schema "conveyor" (the default), created on first connect.
queue = Queue.from_url("postgresql://app:secret@db.internal:5432/shop")

# A schema of your choice, and libpq options (sslmode ...) passed through.
jobs = Queue.from_url("postgresql://app@db.internal/shop?schema=jobs&sslmode=require")

# Queues of one schema share its tables, not their jobs.
emails = Queue.from_url("postgresql://app@db.internal/shop?schema=jobs", name="emails")
# --8<-- [end:urls]


# --8<-- [start:pool]
def queue_on_pool(pool: AsyncConnectionPool[Any]) -> Queue:
    """A queue on the application's own psycopg pool (left open on disconnect)."""
    return Queue.from_url("postgresql://app@db.internal/shop?schema=jobs", pool=pool)


# --8<-- [end:pool]

# --8<-- [start:pgbouncer]
# Behind PgBouncer in transaction mode: LISTEN/NOTIFY does not pass through, so workers
# poll every half second; before PgBouncer 1.21, also turn off prepared statements.
behind_pgbouncer = Queue.from_url(
    "postgresql://app@pgbouncer.internal:6432/shop?schema=jobs"
    "&poll_interval=0.5&prepare_threshold=none"
)
# --8<-- [end:pgbouncer]
