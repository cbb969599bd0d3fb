"""Tasks of the users' domain, declared next to the code they belong to."""

from __future__ import annotations

from typing import Any

from conveyor import Registry
from conveyor.types import Context

registry = Registry()


@registry.task
async def send_welcome_email(ctx: Context, *, user_id: int) -> dict[str, Any]:
    """Welcome a new user."""
    return {"status": "sent", "user_id": user_id}


# Daily at 03:00 in the queue's cron_tz, America/New_York (see app.py): DST-safe.
@registry.scheduled_task("0 3 * * *", timeout=600)
async def cleanup_inactive_users(ctx: Context) -> dict[str, Any]:
    """Clean up inactive users, once a day."""
    return {"status": "cleaned"}
