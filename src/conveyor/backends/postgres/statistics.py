"""Planner statistics for the schema's tables that were never analyzed.

PostgreSQL plans a table that was never analyzed with default guesses: ``queue = $1`` is
taken to match 0.5% of the rows. A statement that looks a batch of keys up in ``jobs``
(``finish``, ``renew``, ``get``) then reads every job of the queue through an index on
``queue`` and hashes them instead of looking each key up in the primary key, and
``finish`` reads every run of the queue the same way. Planned for their values (always,
with ``prepare_threshold=none``), ``renew`` and ``get`` of 100 keys among 100,000 queued
jobs take 17 and 20 ms instead of 0.5; with 100,000 runs, ``finish`` takes 25 ms instead
of 3. Every new schema is in that state until autovacuum analyzes it: within a minute or
so when it runs (``autovacuum_naptime``), never when it is off.

So the backend's periodic maintenance (``expire``, which a worker's sweep runs every few
seconds) analyzes the tables that were never analyzed once they hold :data:`MIN_BYTES`
(``pg_stat_user_tables`` tells: ``last_analyze`` and ``last_autoanalyze`` are both null):

* cheap when there is nothing to do: one catalog query per call (an index lookup) while a
  table was never analyzed, none at all once every table was (or was tried);
* one process at a time: the ANALYZE runs under a transaction-scoped advisory lock taken
  without waiting; the others skip it and find the statistics at their next call;
* never fatal: a role that does not own a table does not try (PostgreSQL would skip the
  table with a warning); an ANALYZE that fails is logged and not tried again by this
  process (a lost connection is: the next call tries again);
* once per table: keeping the statistics current is autovacuum's work (or the DBA's).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from psycopg.rows import tuple_row

from conveyor.backends.postgres.database import Database, Row
from conveyor.errors import BackendError

logger = logging.getLogger("conveyor.backends.postgres")

#: The tables whose statistics the hot statements depend on (claim, renew, finish, get).
TABLES = ("jobs", "runs")
#: The size from which a table is worth analyzing (some 500 jobs): below it, reading all of
#: it costs little whatever the plan, and a sample of a few rows says little.
MIN_BYTES = 64 * 1024


class Statistics:
    """Analyzes the schema's tables that were never analyzed (see the module).

    Args:
        queries: The backend's named queries.
        schema: The schema's name, for messages.
        min_bytes: The size from which a table is analyzed.
    """

    def __init__(self, queries: dict[str, str], schema: str, min_bytes: int = MIN_BYTES) -> None:
        self._queries = queries
        self._schema = schema
        self._min_bytes = min_bytes
        #: The tables that may still need an ANALYZE from this process.
        self.pending = set(TABLES)

    async def maintain(self, db: Database) -> list[str]:
        """Analyze the tables that need it, unless another process is at it.

        Never raises for a database error: after a lost connection the next call tries
        again; an ANALYZE that the server refused is logged and not tried again by this
        process.

        Args:
            db: The backend's database.

        Returns:
            The tables this call analyzed.
        """
        if not self.pending:
            return []
        try:
            rows = await db.fetch(
                "tables_without_statistics",
                self._queries["tables_without_statistics"],
                self._params(),
            )
        except BackendError as exc:
            logger.debug(
                "schema %s: cannot look for tables without statistics: %s", self._schema, exc
            )
            return []
        due = self._due(rows)
        if not due:
            return []
        try:
            return await self._analyze(db)
        except psycopg.Error as exc:
            if exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P")):
                logger.debug("schema %s: cannot analyze now: %s", self._schema, exc)
                return []  # the connection, not the ANALYZE: the next call tries again
            self.pending.difference_update(due)  # tried once: not again from this process
            logger.warning(
                "schema %s: cannot analyze %s (%s); the planner guesses until autovacuum or "
                "a DBA runs ANALYZE",
                self._schema,
                ", ".join(sorted(due)),
                str(exc).strip() or type(exc).__name__,
            )
            return []

    def _params(self) -> dict[str, object]:
        return {"tables": sorted(self.pending), "min_bytes": self._min_bytes}

    def _due(self, rows: Sequence[Row]) -> list[str]:
        """The tables to analyze now; forgets those that need nothing from this process."""
        found = {name: (big, allowed) for name, big, allowed in rows}
        due = []
        for name in sorted(self.pending):
            big, allowed = found.get(name, (False, False))
            if name not in found:
                self.pending.discard(name)  # analyzed (by anyone), or not there
            elif big and not allowed:  # PostgreSQL would skip it with a warning
                self.pending.discard(name)
                logger.info(
                    "schema %s: %s was never analyzed and this role may not analyze it (only "
                    "its owner may); the planner guesses until autovacuum or a DBA runs ANALYZE",
                    self._schema,
                    name,
                )
            elif big:
                due.append(name)
        return due

    async def _analyze(self, db: Database) -> list[str]:
        analyzed: list[str] = []
        async with db.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute(self._queries["analyze_lock"])
            locked = await cur.fetchone()
            if not locked or not locked[0]:
                return []  # another process is analyzing
            # Looked up again under the lock: the process that held it may have just done it.
            await cur.execute(self._queries["tables_without_statistics"], self._params())
            for name in self._due(await cur.fetchall()):
                await cur.execute(self._queries[f"analyze_{name}"])
                analyzed.append(name)
        self.pending.difference_update(analyzed)
        return analyzed


__all__ = ["MIN_BYTES", "TABLES", "Statistics"]
