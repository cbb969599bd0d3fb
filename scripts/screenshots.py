"""Screenshots of the console for the README, taken with headless Chromium.

Seeds a demo SQLite queue with a day of run history (with logs and failures), starts a
worker and the console in this process, runs a long job so that the overview shows a
busy worker and the run page a live log tail, and saves PNGs into ``docs/images/``::

    .venv/bin/python scripts/screenshots.py [--out docs/images] [--phone]

Needs the ``web`` extra, Playwright (``pip install playwright``) and Debian's Chromium at
``/usr/bin/chromium`` (``apt-get install chromium``); it never downloads a browser.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conveyor import CronJob, Job, Queue, Status, Worker
from conveyor.admin import Admin
from conveyor.backends.base import LogLine
from conveyor.web import serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]
log = logging.getLogger("shop.tasks")


# The demo shop's tasks.


async def resize_image(ctx: dict[str, Any], *, name: str, width: int = 800) -> dict[str, Any]:
    """Make a thumbnail of an uploaded image."""
    log.info("resizing %s to %dpx", name, width)
    return {"thumbnail": f"{name}-{width}.webp"}


async def send_email(ctx: dict[str, Any], *, to: str, template: str = "welcome") -> str:
    """Send a transactional email through the mail provider."""
    log.info("rendering template %s for %s", template, to)
    return "sent"


async def charge_card(
    ctx: dict[str, Any], *, order: int, amount_cents: int, currency: str = "EUR"
) -> dict[str, Any]:
    """Charge the customer's card for an order; the gateway sometimes declines."""
    log.info("charging order %d: %d %s", order, amount_cents, currency)
    return {"order": order, "charged": True}


async def build_report(ctx: dict[str, Any], *, month: str, region: str = "eu") -> None:
    """Build the monthly sales report (fails while the warehouse export is late)."""
    raise ValueError(f"no sales data for {month} in {region}")


async def sync_inventory(ctx: dict[str, Any]) -> int:
    """Pull stock levels from the warehouse every 15 minutes."""
    log.info("inventory in sync")
    return 0


async def send_newsletter(ctx: dict[str, Any], *, segment: str, batch: int = 50) -> int:
    """Send the weekly newsletter to a customer segment, in batches."""
    sent = 0
    log.info("newsletter to segment %r, batches of %d", segment, batch)
    while True:
        await asyncio.sleep(0.4)
        sent += batch
        log.info("batch done: %d emails sent to %s", sent, segment)
        if sent % (batch * 5) == 0:
            log.warning("provider throttled us for 2 s after %d emails", sent)


FUNCTIONS = [resize_image, send_email, charge_card, build_report, sync_inventory, send_newsletter]
CRON_JOBS = [CronJob(sync_inventory, cron="*/15 * * * *", timeout=300)]

TRACEBACK = """Traceback (most recent call last):
  File "/srv/shop/tasks/reports.py", line 41, in build_report
    rows = await warehouse.export(month=month, region=region)
  File "/srv/shop/warehouse.py", line 88, in export
    raise ValueError(f"no sales data for {month} in {region}")
ValueError: no sales data for MONTH in eu"""


# History


def _plan(rng: random.Random, index: int) -> tuple[str, dict[str, Any], str, float, list[Any]]:
    """One past run: function, arguments, outcome, duration and log lines."""
    roll = rng.random()
    if roll < 0.35:
        name = f"product-{rng.randint(100, 999)}.jpg"
        lines = [("INFO", f"resizing {name} to 800px"), ("INFO", "uploaded to the CDN")]
        return "resize_image", {"name": name}, "complete", rng.uniform(0.2, 1.5), lines
    if roll < 0.62:
        to = f"customer{rng.randint(1, 5000)}@example.com"
        lines = [("INFO", f"rendering template welcome for {to}"), ("INFO", "accepted by smtp")]
        return "send_email", {"to": to}, "complete", rng.uniform(0.1, 0.6), lines
    if roll < 0.88:
        order = 40000 + index
        args = {"order": order, "amount_cents": rng.randint(500, 30000)}
        declined = rng.random() < 0.12
        lines = [("INFO", f"charging order {order}: {args['amount_cents']} EUR")]
        if declined:
            lines.append(("ERROR", "gateway answered 402: card declined"))
            return "charge_card", args, "failed", rng.uniform(0.5, 2.0), lines
        lines.append(("INFO", "authorized and captured"))
        return "charge_card", args, "complete", rng.uniform(0.4, 2.5), lines
    if roll < 0.93:
        lines = [("INFO", "exporting from the warehouse"), ("ERROR", "warehouse export is late")]
        return "build_report", {"month": "2025-09"}, "failed", rng.uniform(1, 4), lines
    return "sync_inventory", {}, "complete", rng.uniform(2, 8), [("INFO", "inventory in sync")]


async def seed_history(queue: Queue, runs: int = 420, hours: float = 24.0) -> None:
    """Store ``runs`` finished runs spread over the last ``hours``, busier in the day."""
    rng = random.Random(7)
    now = time.time()
    for index in range(runs):
        started = now - hours * 3600 * (rng.random() ** 1.3)
        function, kwargs, outcome, duration, lines = _plan(rng, index)
        job = Job(function=function, kwargs=kwargs or None, retries=1)
        await queue.enqueue(job)
        [row] = await queue.backend.claim("web-1:4021", 1, 60, started)
        claimed = queue.deserialize(row)
        assert claimed is not None
        error = None
        traceback = None
        if outcome == "failed":
            error = lines[-1][1] if function != "build_report" else "no sales data for 2025-09"
            traceback = (
                TRACEBACK.replace("MONTH", "2025-09") if function == "build_report" else None
            )
        status = Status.COMPLETE if outcome == "complete" else Status.FAILED
        transition = queue.transition(
            claimed,
            status,
            result={"ok": True} if outcome == "complete" else None,
            error=error,
            traceback=traceback,
        )
        assert transition.run is not None
        transition.run.finished_ms = int((started + duration) * 1000)
        await queue.backend.finish([transition])
        run_id = str(claimed.meta["run_id"])
        await queue.backend.append_logs(
            [
                LogLine(
                    run_id=run_id,
                    seq=seq,
                    ts=started + duration * seq / (len(lines) + 1),
                    level=level,
                    message=message,
                    extra=queue.dump({"logger": "shop.tasks", "function": function}),
                )
                for seq, (level, message) in enumerate(lines, start=1)
            ]
        )


# Serving


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_console(db: Path, port: int) -> Iterator[dict[str, str]]:
    """A worker and the console in a background event loop; yields facts for the shots."""
    ready = threading.Event()
    facts: dict[str, str] = {}
    stop: list[Any] = []

    async def main() -> None:
        queue = Queue.from_url(f"sqlite:///{db}")
        await queue.connect()
        await seed_history(queue)
        worker = Worker(
            queue,
            FUNCTIONS,
            cron_jobs=CRON_JOBS,
            concurrency=4,
            id="web-1:4021",
            timers={"stats": 1, "logs": 0.3},
            shutdown_grace_period_s=0.5,
        )
        admin = Admin(queue, {f.__name__: f for f in FUNCTIONS}, CRON_JOBS)
        started = asyncio.Event()
        tasks = [
            asyncio.create_task(worker.start()),
            asyncio.create_task(
                serve(admin, "127.0.0.1", port, started=started, title="Shop jobs")
            ),
        ]
        await started.wait()
        key = await admin.enqueue("send_newsletter", {"segment": "returning-customers"})
        await admin.enqueue("resize_image", {"name": "banner.png"}, scheduled_at=time.time() + 3600)
        while True:
            job = await queue.job(key)
            if job is not None and job.meta.get("run_id") and job.status == Status.ACTIVE:
                facts["live_run"] = str(job.meta["run_id"])
                break
            await asyncio.sleep(0.05)
        failed = await admin.runs(function="build_report", status="failed", limit=1)
        facts["failed_run"] = failed.runs[0].run_id
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        stop.append(lambda: loop.call_soon_threadsafe(stopping.set))
        ready.set()
        await stopping.wait()
        await worker.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await queue.disconnect()

    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(60) or failures:
        raise RuntimeError("the demo console did not start") from (failures or [None])[0]
    try:
        yield facts
    finally:
        stop[0]()
        thread.join(10)


def take(out: Path, phone: bool) -> list[Path]:
    """Start everything, take the screenshots, return their paths."""
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    saved = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_console(Path(tmp) / "shop.db", port) as facts,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="light")
        page.goto(f"{base}/?range=24h")
        expect(page.locator("[data-live-badge]")).to_have_text("live")
        expect(page.locator(".running li").first).to_contain_text("send_newsletter")
        saved.append(out / "console-overview.png")
        page.screenshot(path=str(saved[-1]), full_page=True)
        page.goto(f"{base}/runs/{facts['live_run']}")
        expect(page.locator("#logs .log-line").nth(7)).to_be_visible(timeout=15_000)
        saved.append(out / "console-run-logs.png")
        page.screenshot(path=str(saved[-1]), full_page=False)
        if phone:
            mobile = browser.new_page(viewport={"width": 390, "height": 844})
            for name, path in [
                ("overview", "/"),
                ("runs", "/runs"),
                ("jobs", "/jobs"),
                ("enqueue", "/enqueue?job=charge_card"),
                ("failed", f"/runs/{facts['failed_run']}"),
            ]:
                mobile.goto(base + path)
                saved.append(out / f"phone-{name}.png")
                mobile.screenshot(path=str(saved[-1]), full_page=True)
                page.goto(base + path)
                saved.append(out / f"laptop-{name}.png")
                page.screenshot(path=str(saved[-1]), full_page=True)
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    """Take the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--phone", action="store_true", help="also pages at phone width")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"screenshots: {CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    for path in take(args.out, args.phone):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
