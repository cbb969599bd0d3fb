"""Print the SQL that creates or upgrades a Conveyor schema, for a DBA to apply by hand.

Usage: ``python -m conveyor.backends.postgres [--schema NAME] [--from-version N] | psql``
"""

from __future__ import annotations

import argparse
import sys

from conveyor.backends.postgres.migrate import migration_sql


def main(argv: list[str] | None = None) -> int:
    """Write the migration SQL to stdout.

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` by default).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m conveyor.backends.postgres",
        description="Print the SQL that creates or upgrades Conveyor's PostgreSQL schema.",
    )
    parser.add_argument("--schema", default="conveyor", help="the schema (default: conveyor)")
    parser.add_argument(
        "--from-version",
        type=int,
        default=0,
        help="the version already applied (SELECT max(version) FROM <schema>.schema_version)",
    )
    args = parser.parse_args(argv)
    sys.stdout.write(migration_sql(args.schema, args.from_version))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
