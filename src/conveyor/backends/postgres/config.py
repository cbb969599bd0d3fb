"""The backend's settings, and how a queue URL becomes them.

``postgresql://``, ``postgres://``, ``postgresql+psycopg://`` and ``postgresql+asyncpg://``
are accepted (the driver suffix is dropped: the backend always uses psycopg). Conveyor's
own options travel as query parameters and are removed before connecting; the others
(``sslmode``, ``application_name`` ...) go to libpq. Without ``schema``, a ``search_path``
set in libpq's ``options`` (``options=-c search_path=X`` or ``options=--search_path=X``,
URL-encoded or not) names the schema, as it names SAQ's tables' schema.

PgBouncer in transaction mode is declared, not detected (a client cannot tell a pooler from
a server): ``pgbouncer=transaction`` turns prepared statements off unless
``prepare_threshold`` is given (PgBouncer 1.21 and later can keep them with
``max_prepared_statements``), and asks for one of the two ways to wake workers, since
``LISTEN`` and session locks cannot pass through it: ``direct_url`` (a URL that reaches
PostgreSQL itself, for the LISTEN connection and the presence locks) or ``poll_interval``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from conveyor.backends.postgres.sqlfiles import check_schema_name
from conveyor.errors import ConfigurationError, InvalidUrlError

#: Query parameters that belong to Conveyor, not to libpq.
URL_OPTIONS = (
    "schema",
    "poll_interval",
    "prepare_threshold",
    "priorities",
    "pgbouncer",
    "direct_url",
)
_SCHEMES = ("postgresql", "postgres")
#: The widest priority window: the range of the jobs.priority column (an integer).
ALL_PRIORITIES = (-(2**31), 2**31 - 1)
#: ``search_path`` in libpq's ``options``: ``-c search_path=X``, ``-csearch_path=X`` or
#: ``--search_path=X``; the value runs to the next unescaped space.
_SEARCH_PATH = re.compile(r"(?:-c\s*|--)search_path\s*=\s*((?:\\.|\S)+)")
#: SAQ's PostgreSQL options that Conveyor cannot honour: their SAQ default (accepted, as
#: meaning nothing) and the kind of reason another value is refused.
SAQ_ONLY_OPTIONS: dict[str, tuple[Any, str]] = {
    "jobs_table": ("saq_jobs", "tables"),
    "stats_table": ("saq_stats", "tables"),
    "versions_table": ("saq_versions", "tables"),
    "saq_lock_keyspace": (0, "locks"),
}
_SAQ_ONLY_REASONS = {
    "tables": (
        "Conveyor keeps its own tables (jobs, runs, workers ...) in a schema of its own and "
        "cannot use SAQ's table names; drop the option and choose the schema instead "
        "(schema=..., or ?schema= or options=-c search_path=... in the URL)"
    ),
    "locks": (
        "Conveyor's advisory locks are keyed by hashes of its schema's name, not by a "
        "keyspace number; drop the option (a schema of their own keeps two deployments apart)"
    ),
}
#: The values of the ``pgbouncer`` option: PgBouncer's ``pool_mode`` in front of the server.
POOL_MODES = ("session", "transaction")


@dataclasses.dataclass(slots=True)
class Settings:
    """How a :class:`~conveyor.backends.postgres.PostgresBackend` connects.

    Attributes:
        conninfo: The libpq URL without Conveyor's options ('' with a user's pool).
        schema: The schema holding the tables (created by the migrations).
        poll_interval: When set, workers poll every this many seconds instead of using
            LISTEN/NOTIFY (for PgBouncer in transaction mode without ``direct_url``).
        prepare_threshold: psycopg's ``prepare_threshold``; None never prepares
            (PgBouncer in transaction mode before 1.21).
        pgbouncer: PgBouncer's pool mode in front of the server (``"transaction"`` or
            ``"session"``), or None for a direct connection.
        direct_url: A libpq URL that reaches PostgreSQL itself (not a pooler), for the
            connections that need a session of their own: LISTEN and the presence locks
            ('' uses the pool's URL).
        min_size: The pool's minimum size.
        max_size: The pool's maximum size.
        pool_timeout: Seconds an operation waits for a connection before it fails.
        listen_fallback: Seconds between polls while the LISTEN connection is down.
        priorities: The window of priorities that workers claim, both ends included
            (SAQ's ``priorities``); jobs outside it stay queued for other workers. None
            claims every priority.
    """

    conninfo: str = ""
    schema: str = "conveyor"
    poll_interval: float | None = None
    prepare_threshold: int | None = 5
    pgbouncer: str | None = None
    direct_url: str = ""
    min_size: int = 1
    max_size: int = 10
    pool_timeout: float = 10.0
    listen_fallback: float = 1.0
    priorities: tuple[int, int] | None = None

    @property
    def application_name(self) -> str:
        """The ``application_name`` of Conveyor's connections (visible in pg_stat_activity)."""
        return f"conveyor-{self.schema}"[:63]


def _prepare_threshold(value: Any) -> int | None:
    if value is None or str(value).strip().lower() in ("", "none", "null", "off"):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(
            f"prepare_threshold must be an integer or 'none', not {value!r}"
        ) from None


def _poll_interval(value: Any) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        interval = float(value)
    except ValueError:
        interval = -1.0
    if interval <= 0:
        raise ConfigurationError(f"poll_interval must be a positive number, not {value!r}")
    return interval


def _pool_mode(value: Any) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    mode = str(value).strip().lower()
    if mode not in POOL_MODES:
        raise ConfigurationError(
            f"pgbouncer must be PgBouncer's pool_mode, one of {list(POOL_MODES)}, not {value!r}"
            " (statement mode cannot run Conveyor's transactions)"
        )
    return mode


def _direct_url(value: Any) -> str:
    if value is None or str(value).strip() == "":
        return ""
    conninfo, options = split_url(str(value))
    if options:
        raise ConfigurationError(
            f"direct_url takes a plain PostgreSQL URL; move {sorted(options)} to the queue's"
            " URL (percent-encode direct_url inside it: urllib.parse.quote(url, safe=''))"
        )
    return conninfo


def _check_wake_up(settings: Settings) -> None:
    """Through PgBouncer in transaction mode, workers are woken one way or the other."""
    if settings.direct_url and settings.poll_interval is not None:
        raise ConfigurationError(
            "give direct_url (LISTEN on a direct connection) or poll_interval (no LISTEN), not both"
        )
    if settings.pgbouncer == "transaction" and not (
        settings.direct_url or settings.poll_interval is not None
    ):
        raise ConfigurationError(
            "pgbouncer=transaction cannot LISTEN nor hold presence locks through PgBouncer: "
            "add direct_url=<a URL that reaches PostgreSQL itself> (workers "
            "are woken at once, dead workers' jobs recovered early) or poll_interval=<seconds> "
            "(workers poll, jobs of dead workers wait for their leases to expire)"
        )


def _priorities(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else value
    try:
        low, high = (int(part) for part in parts)
    except (TypeError, ValueError):
        low, high = 1, 0
    if not ALL_PRIORITIES[0] <= low <= high <= ALL_PRIORITIES[1]:
        raise ConfigurationError(
            f"priorities must be two integers (lowest, highest) with lowest <= highest, "
            f"not {value!r}"
        )
    return low, high


def search_path_schema(libpq_options: str) -> str | None:
    """The first schema of a ``search_path`` set in libpq's ``options`` (``$user`` skipped),
    or None when it sets none. An unquoted name is folded to lower case, as PostgreSQL
    folds it."""
    match = _SEARCH_PATH.search(libpq_options)
    if match is None:
        return None
    path = re.sub(r"\\(.)", r"\1", match[1])
    for entry in path.split(","):
        entry = entry.strip()
        name = entry[1:-1] if entry[:1] == entry[-1:] == '"' and len(entry) > 1 else entry.lower()
        if name and name != "$user":
            return name
    return None


def conninfo_schema(conninfo: str) -> str | None:
    """The schema that a connection string's ``search_path`` names (URL or ``key=value``
    form), or None."""
    try:
        options = conninfo_to_dict(conninfo).get("options")
    except psycopg.ProgrammingError:
        return None
    return search_path_schema(str(options)) if options else None


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Split a queue URL into the libpq URL and Conveyor's options.

    A ``search_path`` in libpq's ``options`` gives the ``schema`` option when the URL has
    none (the ``options`` parameter still goes to libpq).

    Raises:
        InvalidUrlError: For a scheme other than postgres(ql), with or without a driver.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise InvalidUrlError(
            f"not a PostgreSQL URL: {url!r} (use postgresql://user@host:port/database)"
        )
    libpq: list[tuple[str, str]] = []
    options: dict[str, str] = {}
    search_path: str | None = None
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in URL_OPTIONS:
            options[name] = value
        else:
            libpq.append((name, value))
            if name == "options":
                search_path = search_path_schema(value) or search_path
    if search_path is not None:
        options.setdefault("schema", search_path)
    query = urlencode(libpq, quote_via=quote)  # libpq decodes %20, not +
    conninfo = f"postgresql://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    return conninfo, options


def settings_from(url: str | None, **options: Any) -> Settings:
    """Settings from a URL and keyword options (a keyword wins over the URL).

    Args:
        url: A PostgreSQL URL, or None when a pool is given.
        **options: ``schema``, ``poll_interval``, ``prepare_threshold``, ``pgbouncer``,
            ``direct_url``, ``min_size``, ``max_size``, ``pool_timeout``, ``listen_fallback``,
            ``priorities``.

    Raises:
        ConfigurationError: For an unknown option, one of SAQ's that Conveyor cannot honour
            given another value than SAQ's default (:data:`SAQ_ONLY_OPTIONS`; saying why and
            what to do), or a value that cannot work.
    """
    conninfo, from_url = split_url(url) if url else ("", {})
    merged: dict[str, Any] = {**from_url, **options}
    for name, (saq_default, reason) in SAQ_ONLY_OPTIONS.items():
        value = merged.pop(name, saq_default)
        if value != saq_default:
            raise ConfigurationError(
                f"SAQ's option {name}={value!r} cannot be honoured: {_SAQ_ONLY_REASONS[reason]}"
            )
    known = {f.name for f in dataclasses.fields(Settings)} - {"conninfo"}
    unknown = set(merged) - known
    if unknown:
        raise ConfigurationError(
            f"unknown PostgreSQL backend options {sorted(unknown)}; use {sorted(known)}"
        )
    settings = Settings(conninfo=conninfo)
    settings.schema = check_schema_name(str(merged.get("schema", settings.schema)))
    settings.poll_interval = _poll_interval(merged.get("poll_interval"))
    settings.pgbouncer = _pool_mode(merged.get("pgbouncer"))
    settings.direct_url = _direct_url(merged.get("direct_url"))
    _check_wake_up(settings)
    settings.priorities = _priorities(merged.get("priorities"))
    if "prepare_threshold" in merged:
        settings.prepare_threshold = _prepare_threshold(merged["prepare_threshold"])
    elif settings.pgbouncer == "transaction":
        settings.prepare_threshold = None  # a prepared statement lives in one server session
    for name in ("min_size", "max_size"):
        if name in merged:
            setattr(settings, name, int(merged[name]))
    for name in ("pool_timeout", "listen_fallback"):
        if name in merged:
            setattr(settings, name, float(merged[name]))
    if not 0 <= settings.min_size <= settings.max_size or settings.max_size < 1:
        raise ConfigurationError(
            f"pool sizes must satisfy 0 <= min_size <= max_size, max_size >= 1; "
            f"got min_size={settings.min_size}, max_size={settings.max_size}"
        )
    return settings
