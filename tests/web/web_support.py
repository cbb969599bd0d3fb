"""Constants and helpers shared by the console tests."""

from __future__ import annotations

ADMIN_TOKEN = "admin-token-0123456789"
READ_TOKEN = "read-token-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
