"""The backend's settings, and how a queue URL becomes them.

``postgresql://``, ``postgres://``, ``postgresql+psycopg://`` and ``postgresql+asyncpg://``
are accepted (the driver suffix is dropped: the backend always uses psycopg). Conveyor's
own options travel as query parameters and are removed before connecting; the others
(``sslmode``, ``application_name`` ...) go to libpq.

PgBouncer in transaction mode is declared, not detected (a client cannot tell a pooler from
a server): ``pgbouncer=transaction`` turns prepared statements off unless
``prepare_threshold`` is given (PgBouncer 1.21 and later can keep them with
``max_prepared_statements``), and asks for one of the two ways to wake workers, since
``LISTEN`` and session locks cannot pass through it: ``direct_url`` (a URL that reaches
PostgreSQL itself, for the LISTEN connection and the presence locks) or ``poll_interval``.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from conveyor.backends.postgres.sqlfiles import check_schema_name
from conveyor.errors import ConfigurationError

#: Query parameters that belong to Conveyor, not to libpq.
URL_OPTIONS = ("schema", "poll_interval", "prepare_threshold", "pgbouncer", "direct_url")
_SCHEMES = ("postgresql", "postgres")
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


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Split a queue URL into the libpq URL and Conveyor's options.

    Raises:
        ConfigurationError: For a scheme other than postgres(ql), with or without a driver.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"not a PostgreSQL URL: {url!r} (use postgresql://user@host:port/database)"
        )
    libpq: list[tuple[str, str]] = []
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in URL_OPTIONS:
            options[name] = value
        else:
            libpq.append((name, value))
    query = urlencode(libpq, quote_via=quote)  # libpq decodes %20, not +
    conninfo = f"postgresql://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    return conninfo, options


def settings_from(url: str | None, **options: Any) -> Settings:
    """Settings from a URL and keyword options (a keyword wins over the URL).

    Args:
        url: A PostgreSQL URL, or None when a pool is given.
        **options: ``schema``, ``poll_interval``, ``prepare_threshold``, ``pgbouncer``,
            ``direct_url``, ``min_size``, ``max_size``, ``pool_timeout``, ``listen_fallback``.

    Raises:
        ConfigurationError: For an unknown option or a value that cannot work.
    """
    conninfo, from_url = split_url(url) if url else ("", {})
    merged: dict[str, Any] = {**from_url, **options}
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
