"""The SQLite backend's SQL files: named queries, the schema and the numbered migrations.

They ship inside the package and are read with :mod:`importlib.resources`, so they work from
a wheel, a zip or a source checkout alike.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from importlib import resources

_PACKAGE = __package__ or "conveyor.backends.sqlite"
_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration.

    Attributes:
        version: Its number; migrations apply in ascending order.
        name: The rest of its file name (``initial`` for ``0001_initial.sql``).
        script: Its SQL statements.
    """

    version: int
    name: str
    script: str


def read_text(name: str) -> str:
    """The text of one of the package's SQL files.

    Args:
        name: A path relative to the package, such as ``"schema.sql"``.
    """
    return resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def load_queries() -> dict[str, str]:
    """The named queries of ``queries.sql``, by name.

    Raises:
        ValueError: When a name appears twice.
    """
    text = read_text("queries.sql")
    parts = _NAME_LINE.split(text)
    queries: dict[str, str] = {}
    # parts = [header, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"queries.sql defines {name!r} twice")
        queries[name] = _strip_comment_lines(body)
    return queries


def load_migrations() -> list[Migration]:
    """Every file of ``migrations/``, in version order.

    Raises:
        ValueError: When two files share a version or a file name does not fit ``NNNN_name.sql``.
    """
    migrations: dict[int, Migration] = {}
    for entry in resources.files(_PACKAGE).joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            raise ValueError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise ValueError(f"two migrations have version {version}")
        migrations[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [migrations[v] for v in sorted(migrations)]


def statements(script: str) -> list[str]:
    """Split a script into its statements, leaving out comment lines between them.

    ``sqlite3.complete_statement`` decides where a statement ends, so semicolons inside
    strings or trigger bodies do not split it. Each statement can then run inside a
    transaction of the caller's (``executescript`` would commit first).
    """
    out: list[str] = []
    buffer: list[str] = []
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer.append(line)
        text = "".join(buffer)
        if sqlite3.complete_statement(text):
            out.append(text.strip())
            buffer = []
    rest = "".join(buffer).strip()
    if rest:
        raise ValueError(f"incomplete SQL statement at the end of a script: {rest[:80]!r}")
    return out


def _strip_comment_lines(body: str) -> str:
    lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip()
