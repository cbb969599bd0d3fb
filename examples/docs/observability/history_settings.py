"""Run history settings: log capture and retention."""

import logging

from conveyor import Queue
from conveyor.admin import Admin
from conveyor.observability.retention import retention_cron_job
from conveyor.types import Context

queue = Queue.from_url("sqlite:///shop.db")


async def send_receipt(ctx: Context, *, order_id: int) -> None:
    logging.getLogger("shop").debug("rendering the receipt of order %s", order_id)


# --8<-- [start:capture]
settings = {
    "queue": queue,
    "functions": [send_receipt],
    "log_level": logging.DEBUG,  # capture DEBUG lines too (INFO by default)
    "retention_s": 30 * 86400,  # keep runs and their logs for 30 days (7 by default)
}
# --8<-- [end:capture]

# --8<-- [start:schedule]
# The purge on a schedule of your own: turn the built-in one off, add yours.
custom_schedule = {
    "queue": queue,
    "functions": [send_receipt],
    "retention_s": None,
    "cron_jobs": [retention_cron_job(14 * 86400, cron="30 4 * * sun", tz="Europe/Berlin")],
}
# --8<-- [end:schedule]


# --8<-- [start:purge]
async def purge_now(admin: Admin) -> int:
    """Delete finished runs older than a day, with their logs, now."""
    return await admin.purge(86400, actor="ops")


# --8<-- [end:purge]
