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
# Behind PgBouncer in transaction mode: everything goes through PgBouncer, except LISTEN
# and the workers' presence locks, which go straight to PostgreSQL (direct_url).
behind_pgbouncer = Queue.from_url(
    "postgresql://app@pgbouncer.internal:6432/shop?schema=jobs&pgbouncer=transaction"
    "&direct_url=postgresql://app@db.internal:5432/shop"
)

# A direct URL with a query string (or a password) of its own is easier as a keyword.
with_tls = Queue.from_url(
    "postgresql://app@pgbouncer.internal:6432/shop?schema=jobs&pgbouncer=transaction",
    direct_url="postgresql://app@db.internal:5432/shop?sslmode=require",
)

# Or no direct connection at all: idle workers look for jobs every half second.
polling = Queue.from_url(
    "postgresql://app@pgbouncer.internal:6432/shop?schema=jobs&pgbouncer=transaction"
    "&poll_interval=0.5"
)
# --8<-- [end:pgbouncer]
