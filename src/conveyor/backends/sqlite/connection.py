"""Settings of the SQLite backend, read from its URL, and the connections they open.

URLs follow SQLAlchemy: ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``, and
bare ``sqlite://`` for ``conveyor.db`` in the working directory. Options travel as query
parameters (``?synchronous=FULL&poll_interval=0.05``) or keyword arguments, which win.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from conveyor.backends.sqlite.checkpoints import BACKSTOP_PAGES
from conveyor.errors import ConfigurationError

DEFAULT_FILE = "conveyor.db"
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_WAKEUPS = ("socket", "poll")


@dataclasses.dataclass(frozen=True, slots=True)
class SQLiteSettings:
    """How the backend opens and watches its database file.

    Attributes:
        path: The database file.
        synchronous: ``PRAGMA synchronous``. ``NORMAL`` (the default) survives an
            application crash; ``FULL`` also survives a power loss, at a cost per commit.
        busy_timeout_ms: How long a write waits for another process's write to finish.
        poll_interval: Seconds between two checks for commits by other connections while
            someone waits for work or for a job to finish.
        wakeup: ``socket`` (the default): other processes of this host also wake waiters
            at once through Unix datagram sockets (see :mod:`.doorbell`), the poll
            catching the rest; ``poll``: the poll alone.
    """

    path: Path
    synchronous: str = "NORMAL"
    busy_timeout_ms: int = 5000
    poll_interval: float = 0.02
    wakeup: str = "socket"

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SQLiteSettings:
        """Read settings from a ``sqlite://`` URL and keyword arguments.

        Raises:
            ConfigurationError: For a URL that is not ``sqlite://``, an in-memory database
                (use ``memory://``), or an unknown or invalid option.
        """
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.split("+", 1)[0].lower() != "sqlite":
            raise ConfigurationError(f"not a sqlite:// URL: {url!r}")
        location, _, query = rest.partition("?")
        options: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        options.update(kwargs)
        return cls._build(_path_of(location, url), options)

    @classmethod
    def _build(cls, path: Path, options: dict[str, Any]) -> SQLiteSettings:
        known = {"synchronous", "busy_timeout", "poll_interval", "wakeup"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown sqlite:// option(s) {', '.join(unknown)}; use {', '.join(sorted(known))}"
            )
        synchronous = str(options.get("synchronous", "NORMAL")).upper()
        if synchronous not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous={synchronous!r} is not one of {', '.join(_SYNCHRONOUS)}"
            )
        wakeup = str(options.get("wakeup", "socket")).lower()
        if wakeup not in _WAKEUPS:
            raise ConfigurationError(f"wakeup={wakeup!r} is not one of {', '.join(_WAKEUPS)}")
        try:
            busy_timeout_ms = int(options.get("busy_timeout", 5000))
            poll_interval = float(options.get("poll_interval", 0.02))
        except ValueError as exc:
            raise ConfigurationError(f"invalid sqlite:// option: {exc}") from None
        if busy_timeout_ms < 0 or not 0 < poll_interval <= 60:
            raise ConfigurationError(
                "busy_timeout (ms) must be >= 0 and poll_interval (seconds) in (0, 60]"
            )
        return cls(path, synchronous, busy_timeout_ms, poll_interval, wakeup)


def _path_of(location: str, url: str) -> Path:
    # sqlite:///x.db -> "/x.db" -> relative x.db; sqlite:////tmp/x.db -> absolute /tmp/x.db
    location = unquote(location)
    if location.startswith("/"):
        location = location[1:]
    if location in ("", "/"):
        location = DEFAULT_FILE
    if location == ":memory:" or location.startswith("file:"):
        raise ConfigurationError(
            f"{url!r}: the SQLite backend needs a file that worker processes can share; "
            "use memory:// for an in-process queue"
        )
    # Absolute now, so that a later chdir does not move the queue.
    return Path(location).absolute()


def open_connection(settings: SQLiteSettings) -> sqlite3.Connection:
    """Open the connection that the backend's database thread owns.

    Autocommit (``isolation_level=None``): every transaction is an explicit
    ``BEGIN IMMEDIATE`` ... ``COMMIT`` issued by the operations. Creates the file's
    directory when it is missing.
    """
    settings.path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        settings.path, isolation_level=None, timeout=settings.busy_timeout_ms / 1000
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout_ms)}")
        _enable_wal(conn, settings.busy_timeout_ms / 1000)
        conn.execute(f"PRAGMA synchronous = {settings.synchronous}")
        # Checkpoints are the checkpoint thread's (see .checkpoints); this is a backstop.
        conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        conn.create_function("conveyor_contains", 2, contains, deterministic=True)
        conn.execute("SELECT json_valid('[]')")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    # Switching a new file to WAL takes an exclusive lock, and SQLite reports a conflict
    # with another process doing the same at once as SQLITE_BUSY without calling the busy
    # handler: retry here, within the busy timeout.
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            continue
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL mode (journal_mode is {mode!r})")
        return


def open_watcher(settings: SQLiteSettings) -> sqlite3.Connection:
    """Open the connection that only reads ``PRAGMA data_version``.

    It is used from the event loop's thread (a read takes a few microseconds), so it is
    opened with ``check_same_thread=False`` and never waits on a lock: a busy database
    reads as a change, which only makes a waiter wake early.
    """
    conn = sqlite3.connect(settings.path, isolation_level=None, timeout=0, check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    return conn


def read_data_version(conn: sqlite3.Connection) -> int | None:
    """``PRAGMA data_version``: it changes when another connection commits.

    Returns:
        The version, or None when the database could not be read just now.
    """
    try:
        row = conn.execute("PRAGMA data_version").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


def contains(haystack: str | None, needle: str | None) -> bool:
    """SQL ``conveyor_contains(error, text)``: a case-insensitive substring test."""
    if needle is None:
        return True
    return needle.lower() in (haystack or "").lower()
