"""The backend's SQL, read from the package's ``.sql`` files for one schema.

Nothing is cached at module level: a backend reads its files once, when it is built, with
its schema substituted (``{{schema}}`` as a quoted identifier, ``{{schema_name}}`` as a
string literal).
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

from conveyor.errors import ConfigurationError

_PACKAGE = "conveyor.backends.postgres"
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_QUERY_START = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_FRAGMENT = re.compile(r"\{\{(fragment_[a-z_]+)\}\}")

#: Every query the backend runs; a missing one fails at construction, not mid-operation.
QUERY_NAMES = frozenset(
    {
        "abort",
        "analyze_jobs",
        "analyze_lock",
        "analyze_runs",
        "append_logs",
        "claim",
        "claim_again",
        "count",
        "create_schema",
        "create_version_table",
        "current_version",
        "delete_worker",
        "drop",
        "enqueue",
        "enqueue_job",
        "enqueue_jobs",
        "expire",
        "expire_dead_leases",
        "finish",
        "finish_with_logs",
        "get",
        "get_run",
        "list_jobs",
        "list_runs",
        "migration_lock",
        "next_due",
        "purge_runs",
        "put_worker",
        "read_logs",
        "record_version",
        "recover",
        "recover_again",
        "renew",
        "server_identity",
        "tables_without_statistics",
        "update",
        "version_table",
        "workers",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration.

    Attributes:
        version: Its number (``0001_initial.sql`` is 1).
        name: The file name without ``.sql``.
        sql: The statements, with the schema substituted.
    """

    version: int
    name: str
    sql: str


@dataclasses.dataclass(frozen=True, slots=True)
class SqlFiles:
    """The SQL of one schema.

    Attributes:
        schema: The schema name.
        queries: Named queries from ``queries.sql``.
        schema_sql: ``schema.sql``: the current schema in one piece.
        migrations: ``migrations/NNNN_*.sql``, in order.
    """

    schema: str
    queries: dict[str, str]
    schema_sql: str
    migrations: tuple[Migration, ...]

    @property
    def latest_version(self) -> int:
        """The version that applying every migration reaches."""
        return self.migrations[-1].version if self.migrations else 0


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a plain identifier, else raise.

    Raises:
        ConfigurationError: For a name that is not ``[A-Za-z_][A-Za-z0-9_]*`` (63 at most).
    """
    if not _SCHEMA_NAME.match(schema):
        raise ConfigurationError(
            f"invalid PostgreSQL schema name {schema!r}: use letters, digits and underscores "
            "(not starting with a digit), 63 characters at most"
        )
    return schema


def _substitute(text: str, schema: str) -> str:
    return text.replace("{{schema}}", f'"{schema}"').replace("{{schema_name}}", f"'{schema}'")


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` blocks into ``{name: sql}``.

    Raises:
        ConfigurationError: When a name appears twice.
    """
    parts = _QUERY_START.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ConfigurationError(f"query {name!r} is defined twice in queries.sql")
        queries[name] = body.strip().rstrip(";")
    return queries


def _insert_fragments(queries: dict[str, str]) -> None:
    """Replace ``{{fragment_x}}`` in every query by the block ``fragment_x`` (and drop the
    blocks, which are not queries).

    Raises:
        ConfigurationError: When a query uses a fragment that does not exist.
    """
    fragments = {name: queries.pop(name) for name in list(queries) if name.startswith("fragment_")}
    for name, body in queries.items():
        for fragment in set(_FRAGMENT.findall(body)):
            if fragment not in fragments:
                raise ConfigurationError(f"queries.sql: {name!r} uses an unknown {fragment!r}")
            body = body.replace("{{" + fragment + "}}", fragments[fragment])
        queries[name] = body


def _read_migrations(schema: str) -> tuple[Migration, ...]:
    found: list[Migration] = []
    for entry in resources.files(_PACKAGE).joinpath("migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            continue
        text = _substitute(entry.read_text(encoding="utf-8"), schema)
        found.append(Migration(int(match.group(1)), entry.name.removesuffix(".sql"), text))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ConfigurationError(
                f"PostgreSQL migrations must be numbered 1, 2, 3 ... without gaps; "
                f"found {migration.name} where version {expected} was expected"
            )
    return tuple(found)


def load(schema: str) -> SqlFiles:
    """Read every SQL file of the backend for ``schema``.

    Raises:
        ConfigurationError: For a bad schema name or a malformed file.
    """
    check_schema_name(schema)
    package = resources.files(_PACKAGE)
    queries = parse_queries(
        _substitute(package.joinpath("queries.sql").read_text(encoding="utf-8"), schema)
    )
    _insert_fragments(queries)
    missing = QUERY_NAMES - queries.keys()
    if missing:
        raise ConfigurationError(f"queries.sql lacks the queries {sorted(missing)}")
    schema_sql = _substitute(package.joinpath("schema.sql").read_text(encoding="utf-8"), schema)
    return SqlFiles(schema, queries, schema_sql, _read_migrations(schema))
