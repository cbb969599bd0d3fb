"""The shop's tasks: what its workers run."""

import asyncio
import hashlib
import logging

from conveyor import Registry, task
from conveyor.types import Context

logger = logging.getLogger("shop.tasks")


# --8<-- [start:plain]
async def send_welcome(ctx: Context, *, email: str) -> str:
    """Send the welcome email to a new customer."""
    mailer = ctx["mailer"]  # put there by the worker's startup hook
    logger.info("sending the welcome email to %s", email)
    await mailer.send(email, "Welcome to the shop!")
    return f"welcome sent to {email}"


# --8<-- [end:plain]


# --8<-- [start:handle]
@task(timeout=30, retries=3, retry_delay=0.5)
async def resize_image(ctx: Context, *, path: str, width: int) -> str:
    """Resize an uploaded image (the sleep stands for the real work)."""
    await asyncio.sleep(0.05)
    return f"resized {path} to {width} px"


# --8<-- [end:handle]


# --8<-- [start:sync]
def checksum(ctx: Context, *, text: str) -> str:
    """A plain function: the worker runs it in a thread, so it may block."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --8<-- [end:sync]


# --8<-- [start:process]
@task(process=True, timeout=60, retries=2)
def render_invoice(ctx: Context, *, order_id: int, lines: list[float]) -> str:
    """CPU-bound and stoppable: each attempt runs in a child process, which a timeout, an
    abort or a shutdown terminates."""
    job = ctx["job"]  # a copy of the job: its key, arguments, attempts; no job.update()
    total = sum(lines)
    return f"invoice {order_id} (attempt {job.attempts}): {total:.2f}"


# --8<-- [end:process]


# --8<-- [start:heartbeat]
@task(timeout=3600, heartbeat=60)
async def import_catalog(ctx: Context, *, pages: int) -> int:
    """A long job: it reports progress, which is also its heartbeat."""
    job = ctx["job"]
    for page in range(pages):
        await asyncio.sleep(0.01)  # stands for fetching and storing one page
        await job.update(progress=(page + 1) / pages)
    return pages


# --8<-- [end:heartbeat]


# --8<-- [start:registry]
registry = Registry()


@registry.task(timeout=120)
async def export_orders(ctx: Context, *, month: str) -> int:
    """Export a month of orders; returns how many were exported."""
    logger.info("exporting the orders of %s", month)
    return 42


@registry.scheduled_task("0 7 * * mon-fri", timezone="Europe/Berlin", timeout=300)
async def morning_report(ctx: Context) -> None:
    """Every weekday at 7:00 in Berlin, summer time or not."""
    logger.info("good morning: yesterday's report is ready")


# --8<-- [end:registry]
