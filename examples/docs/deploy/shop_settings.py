"""Worker settings read from the environment, as a deployment provides them.

``conveyor shop_settings.settings`` calls ``settings()`` once per worker process.
"""

import os

from conveyor import Queue
from conveyor.types import Context, SettingsDict


async def send_receipt(ctx: Context, *, order_id: int) -> str:
    return f"receipt for order {order_id}"


# --8<-- [start:settings]
def settings() -> SettingsDict:
    """The worker's settings; the environment says where the queue is."""
    queue = Queue.from_url(
        os.environ.get("QUEUE_URL", "sqlite:///shop.db"),
        defaults={"timeout": 300, "retries": 3, "retry_delay": 5, "retry_backoff": 300},
    )
    return {
        "queue": queue,
        "functions": [send_receipt],
        "concurrency": int(os.environ.get("WORKER_CONCURRENCY", "20")),
        "shutdown_grace_period_s": 30,
        "metadata": {"release": os.environ.get("RELEASE", "dev")},
    }


# --8<-- [end:settings]
