"""The demo tasks behind ``/queue/example``, ``/queue/email`` and ``/queue/delayed``.

Each module gathers its tasks in a registry of its own; the application includes them all
(``QueueConfig(tasks=[tasks.registry, users.registry])``). Nothing is global.
"""

from __future__ import annotations

import logging
from typing import Any

from conveyor import Registry
from conveyor.types import Context

logger = logging.getLogger(__name__)

registry = Registry()


@registry.task
async def example_task(ctx: Context, *, message: str = "Default message") -> dict[str, Any]:
    """Process a message."""
    logger.info("processing %r", message)
    return {"status": "success", "processed_message": f"Processed: {message}"}


@registry.task(timeout=60, retries=3, retry_delay=5.0)
async def send_email(ctx: Context, *, to: str, subject: str, email_body: str) -> dict[str, Any]:
    """Send an email (here: log it); retried up to 3 times if the mail server fails."""
    logger.info("sending %r to %s (%d characters)", subject, to, len(email_body))
    return {"status": "sent", "to": to, "subject": subject}


@registry.task
async def delayed_task(ctx: Context, *, message: str) -> dict[str, Any]:
    """Run when its time comes."""
    return {"status": "success", "message": message}
