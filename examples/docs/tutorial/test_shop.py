"""Testing the shop's tasks with pytest, on the in-memory backend: no file, no server.

Run with ``pytest test_shop.py`` (needs pytest and pytest-asyncio).
"""

import pytest
from conveyor import Queue
from conveyor.testing.fixtures import running_worker
from conveyor.types import Context

from tasks import import_catalog, resize_image, send_welcome

pytestmark = pytest.mark.asyncio


# --8<-- [start:direct]
async def test_a_task_handle_is_a_plain_function() -> None:
    # Called directly, with a context of your choosing: no queue, no worker.
    assert await resize_image({}, path="cat.jpg", width=200) == "resized cat.jpg to 200 px"


# --8<-- [end:direct]


# --8<-- [start:worker]
class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, to: str, subject: str) -> None:
        self.sent.append(to)


async def test_the_welcome_email_goes_through_a_worker() -> None:
    mailer = FakeMailer()

    async def startup(ctx: Context) -> None:
        ctx["mailer"] = mailer

    queue = Queue.from_url("memory://")
    async with running_worker(queue, [send_welcome, import_catalog], startup=startup):
        result = await queue.apply("send_welcome", email="ada@example.com", timeout=5)
        pages = await import_catalog.apply(queue, timeout=5, pages=3)

    assert result == "welcome sent to ada@example.com"
    assert mailer.sent == ["ada@example.com"]
    assert pages == 3


# --8<-- [end:worker]
