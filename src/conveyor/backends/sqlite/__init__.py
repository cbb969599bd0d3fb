"""The embedded SQLite backend (``sqlite:///path.db``): Conveyor's zero-setup default."""

from conveyor.backends.sqlite.backend import SQLiteBackend
from conveyor.backends.sqlite.connection import SQLiteSettings

__all__ = ["SQLiteBackend", "SQLiteSettings"]
