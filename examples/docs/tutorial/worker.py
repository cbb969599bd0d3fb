"""The shop's worker: ``conveyor worker.settings`` runs it."""

import logging

from conveyor import CronJob, Queue
from conveyor.types import Context, SettingsDict

from tasks import checksum, import_catalog, registry, resize_image, send_welcome

logger = logging.getLogger("shop.worker")


class Mailer:
    """Stands for a real mail client (an HTTP client, an SMTP connection ...)."""

    async def send(self, to: str, subject: str) -> None:
        logger.info("mail to %s: %s", to, subject)

    async def close(self) -> None:
        pass


# --8<-- [start:queue]
queue = Queue.from_url(
    "sqlite:///shop.db",
    defaults={"timeout": 60, "retries": 2, "retry_delay": 1.0},
)
# --8<-- [end:queue]


# --8<-- [start:hooks]
async def startup(ctx: Context) -> None:
    # Shared resources live in the context, built once per worker process.
    ctx["mailer"] = Mailer()


async def shutdown(ctx: Context) -> None:
    await ctx["mailer"].close()


async def before_process(ctx: Context) -> None:
    logger.info("starting %s", ctx["job"].function)


async def after_process(ctx: Context) -> None:
    if ctx["exception"] is not None:
        logger.warning("%s raised %r", ctx["job"].function, ctx["exception"])


# --8<-- [end:hooks]


async def stock_check(ctx: Context) -> None:
    logger.info("checking the stock levels")


# --8<-- [start:settings]
settings: SettingsDict = {
    "queue": queue,
    "functions": [send_welcome, resize_image, checksum, import_catalog, registry],
    "cron_jobs": [CronJob(stock_check, cron="*/15 * * * *", timeout=60)],
    "concurrency": 20,
    "startup": startup,
    "shutdown": shutdown,
    "before_process": before_process,
    "after_process": after_process,
    "shutdown_grace_period_s": 30,
}
# --8<-- [end:settings]
