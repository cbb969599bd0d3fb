"""The console in headless Chromium: a worker and ``run_web`` in subprocesses, on SQLite.

Skipped with a reason when Debian's Chromium (``/usr/bin/chromium``) or Playwright is
missing, except under ``CI=true``, where that is a failure (``.ci/install-browser``
installs both). Playwright's sync API; every wait is an auto-waiting ``expect``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]
ROOT = Path(__file__).resolve().parents[2]
ADMIN = ("ops", "ops-browser-password")
VIEWER = ("viewer", "viewer-browser-password")
TOKEN = "browser-admin-token-123"

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium, or .ci/install-browser)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright, or .ci/install-browser)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(predicate: Any, timeout: float, what: str, processes: list[Any]) -> None:
    """Poll ``predicate`` until it holds; fail early if a subprocess died."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


class Stack:
    """The console's URL, an API client, and where the test tasks look for files."""

    def __init__(self, base: str, tmp: Path, console: list[str], env: dict[str, str]) -> None:
        self.base = base
        self.tmp = tmp
        self.console_command = console
        self.env = env
        self.processes: list[subprocess.Popen[bytes]] = []
        self.api = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def enqueue(self, name: str, args: dict[str, Any], **extra: Any) -> str:
        response = self.api.post("/api/enqueue", json={"name": name, "args": args, **extra})
        assert response.status_code == 201, response.text
        return str(response.json()["key"])

    def start_console(self) -> None:
        self.processes.append(subprocess.Popen(self.console_command, env=self.env, cwd=self.tmp))

    def stop_console(self) -> None:
        console = self.processes.pop()
        console.terminate()
        console.wait(15)

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.api.get("/api/runs", params=params).json()["runs"]
        return runs

    def wait_for_run(self, key: str, status: str, count: int = 1) -> None:
        def done() -> bool:
            return len(self.runs(key=key, status=status)) >= count

        _wait_for(done, 20, f"{count} {status} run(s) of {key}", [])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker and a console (``run_web``) in subprocesses over one SQLite file."""
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(missing)
    tmp = tmp_path_factory.mktemp("browser")
    port = _free_port()
    env = {
        **os.environ,
        "CONVEYOR_WEB_TEST_DB": str(tmp / "queue.db"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "web"), str(ROOT / "src")]),
        "CONVEYOR_AUTH_USER": ADMIN[0],
        "CONVEYOR_AUTH_PASSWORD": ADMIN[1],
        "CONVEYOR_AUTH_READ_USER": VIEWER[0],
        "CONVEYOR_AUTH_READ_PASSWORD": VIEWER[1],
        "CONVEYOR_AUTH_TOKEN": TOKEN,
    }
    for name in ("AUTH_USER", "AUTH_PASSWORD", "CONVEYOR_AUTH_READ_TOKEN", "CONVEYOR_SECRET_KEY"):
        env.pop(name, None)
    console_code = (
        "import sys; from conveyor.web import run_web; "
        f"sys.exit(run_web(['console_tasks.settings'], '127.0.0.1', {port}, poll_interval=0.3))"
    )
    stack = Stack(f"http://127.0.0.1:{port}", tmp, [sys.executable, "-c", console_code], env)
    worker = [sys.executable, "-m", "conveyor", "console_tasks.settings"]
    stack.processes.append(subprocess.Popen(worker, env=env, cwd=tmp))
    stack.start_console()

    def healthy() -> bool:
        try:
            return stack.api.get("/api/health").status_code == 200
        except httpx.TransportError:
            return False

    try:
        _wait_for(healthy, 30, "the console saw a live worker", stack.processes)
        yield stack
    finally:
        stack.api.close()
        for process in stack.processes:
            process.terminate()
        for process in stack.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    """Headless Chromium (Debian's; Playwright never downloads one here)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; dialogs are accepted.

    The test fails if the page broke the console's Content-Security-Policy (a script or
    style the policy blocked would leave part of the console dead)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    blocked: list[str] = []
    tab.on(
        "console",
        lambda message: (
            blocked.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield tab
    context.close()
    assert blocked == [], blocked


def sign_in(page: Any, stack: Stack, user: tuple[str, str], path: str = "/") -> None:
    """Open ``path``, get sent to the sign-in form, sign in and land back on ``path``."""
    from playwright.sync_api import expect

    page.goto(stack.base + path)
    expect(page).to_have_url(f"{stack.base}/login?next={path.replace('/', '%2F')}")
    page.get_by_label("User name").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(stack.base + path)
    expect(page.locator(".user")).to_contain_text(user[0])


def test_sign_in_and_watch_a_job_and_its_logs_live(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    page.goto(stack.base + "/login")
    page.get_by_label("User name").fill(ADMIN[0])
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")
    sign_in(page, stack, ADMIN)
    expect(page.locator("[data-live-badge]")).to_have_text("live")
    release = stack.tmp / "release-live"
    key = stack.enqueue("wait_for_file", {"path": str(release), "lines": 2})
    # The overview follows without a reload: the counter and the worker's job.
    expect(page.locator('[data-counter="running"]')).to_have_text("1")
    expect(page.locator(".running")).to_contain_text("wait_for_file")
    page.get_by_role("link", name="Runs", exact=True).click()
    row = page.locator("tr", has_text=key)
    expect(row.locator(".status")).to_have_text("running")
    row.get_by_role("link", name="wait_for_file").click()
    logs = page.locator("#logs")
    expect(logs).to_contain_text("waiting line 2")
    expect(page.locator("[data-tail-badge]")).to_have_text("following")
    release.touch()
    expect(logs).to_contain_text("released by")
    expect(page.locator("[data-run-status]")).to_have_text("complete")
    expect(page.locator("[data-tail-badge]")).to_be_hidden()
    expect(page.locator('[data-region="run"]')).to_contain_text("released")  # the result
    page.get_by_label("Wrap").check()
    expect(logs).to_have_class("logs wrap")


def test_enqueue_from_the_generated_form(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    sign_in(page, stack, ADMIN, "/enqueue")
    page.get_by_placeholder("name or description").fill("hello")
    expect(page.locator("[data-job-list] li:visible")).to_have_count(1)
    page.get_by_role("link", name="greet").click()
    expect(page.get_by_role("heading", name="greet")).to_be_visible()
    expect(page.locator("pre.doc")).to_contain_text("Say hello to someone.")
    expect(page.locator("#f-times")).to_have_value("1")
    # The raw JSON editor, with arguments that do not fit: the error is shown.
    page.get_by_label("Raw JSON").check()
    page.locator("textarea[name=args]").fill('{"name": 7}')
    page.get_by_role("button", name="Enqueue greet").click()
    expect(page.get_by_role("alert").first).to_contain_text("expected str")
    # The generated form, filled in: the job runs and its run page shows its logs.
    page.get_by_label("Form").check()
    page.locator("#f-name").fill("browser")
    page.locator("#f-times").fill("3")
    page.locator("#f-loud").select_option("true")
    page.get_by_role("button", name="Enqueue greet").click()
    expect(page.locator(".flash")).to_contain_text("Enqueued greet")
    expect(page).to_have_url(re.compile(r"/runs\?key=[0-9a-f-]+$"))
    expect(page.locator("tbody .status").first).to_have_text("complete")
    page.locator("tbody").get_by_role("link", name="greet").first.click()
    expect(page.locator("#logs")).to_contain_text("hello BROWSER (3 of 3)")


def test_typed_fields_and_switching_between_form_and_raw_json(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    sign_in(page, stack, ADMIN, "/enqueue")
    page.get_by_role("link", name="report").click()
    # An Enum parameter: a choice list with its default chosen (by value, not repr).
    expect(page.locator("#f-kind")).to_have_value('"daily"')
    expect(page.locator("#f-kind option")).to_have_text(["default", "daily", "weekly"])
    page.locator("#f-currency").select_option(label="USD")
    page.locator("#f-tags").fill('["a", "b"]')
    # Form -> Raw JSON keeps what was typed, with the defaults of the fields left alone.
    page.get_by_label("Raw JSON").check()
    raw = page.locator("textarea[name=args]")
    assert json.loads(raw.input_value()) == {
        "kind": "daily",
        "currency": "USD",
        "tags": ["a", "b"],
        "limits": None,
    }
    # ... and back.
    raw.fill('{"kind": "weekly", "currency": "EUR", "tags": ["c"], "limits": {"x": 1}}')
    page.get_by_label("Form").check()
    expect(page.locator("#f-kind")).to_have_value('"weekly"')
    expect(page.locator("#f-currency")).to_have_value('"EUR"')
    expect(page.locator("#f-tags")).to_have_value('["c"]')
    expect(page.locator("#f-limits")).to_have_value('{"x":1}')
    page.get_by_role("button", name="Enqueue report").click()
    expect(page.locator(".flash")).to_contain_text("Enqueued report")
    expect(page.locator("tbody .status").first).to_have_text("complete")


def test_abort_a_queued_job(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    key = stack.enqueue("greet", {"name": "never"}, scheduled_at=time.time() + 3600)
    sign_in(page, stack, ADMIN, "/")
    # The Scheduled card leads to the scheduled jobs (not to the queued ones).
    page.locator(".card", has_text="Scheduled").click()
    expect(page).to_have_url(stack.base + "/jobs?state=scheduled")
    row = page.locator(f'tr[data-job-key="{key}"]')
    expect(row).to_contain_text("scheduled")
    # Times show the browser's zone and how far away they are.
    due = row.locator("time").last
    expect(due).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ in (60|59) minutes$"))
    row.get_by_role("button", name="Abort").click()
    expect(page.locator(".flash")).to_contain_text(f"Job {key} is aborted.")
    expect(page.locator(f'tr[data-job-key="{key}"]')).to_have_count(0)
    # Aborted jobs have their own list; the failed one does not show them.
    page.get_by_role("tab", name="failed").click()
    expect(page.locator(f'tr[data-job-key="{key}"]')).to_have_count(0)
    page.get_by_role("tab", name="aborted").click()
    row = page.locator(f'tr[data-job-key="{key}"]')
    expect(row.locator(".status")).to_have_text("aborted")
    # Retrying it runs it now: the confirmation says its schedule is not kept.
    messages: list[str] = []
    page.on("dialog", lambda dialog: messages.append(dialog.message))
    row.get_by_role("button", name="Retry").click()
    expect(page.locator(".flash")).to_contain_text(f"Job {key} was queued again.")
    assert len(messages) == 1 and "is not kept" in messages[0], messages


def test_retry_one_failed_job_then_several(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    keys = [stack.enqueue("fail", {"message": f"broken {n}"}) for n in range(3)]
    for key in keys:
        stack.wait_for_run(key, "failed")
    sign_in(page, stack, ADMIN, "/jobs")
    page.get_by_role("tab", name="failed").click()
    page.locator(f'tr[data-job-key="{keys[0]}"]').get_by_role("button", name="Retry").click()
    expect(page.locator(".flash")).to_contain_text("was queued again")
    stack.wait_for_run(keys[0], "failed", count=2)
    page.goto(stack.base + "/jobs?state=failed")
    bulk = page.get_by_role("button", name="Retry selected")
    expect(bulk).to_be_disabled()
    for key in keys[1:]:
        page.locator(f'tr[data-job-key="{key}"] input[type=checkbox]').check()
    expect(page.locator("[data-selected-count]")).to_have_text("2 selected")
    bulk.click()
    expect(page.locator(".flash")).to_contain_text("Retried 2 of 2 job(s).")
    for key in keys[1:]:
        stack.wait_for_run(key, "failed", count=2)


def test_a_read_only_user_cannot_act(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    key = stack.enqueue("greet", {"name": "untouchable"}, scheduled_at=time.time() + 3600)
    sign_in(page, stack, VIEWER, "/jobs")
    expect(page.locator(".user")).to_contain_text("read-only")
    page.get_by_role("tab", name="scheduled").click()
    row = page.locator(f'tr[data-job-key="{key}"]')
    expect(row).to_be_visible()
    expect(row.get_by_role("button")).to_have_count(0)
    expect(page.get_by_role("button", name="Abort selected")).to_have_count(0)
    page.goto(stack.base + "/enqueue?job=greet")
    expect(page.get_by_text("You have read-only access")).to_be_visible()
    expect(page.get_by_role("button", name="Enqueue greet")).to_have_count(0)
    # Even a hand-made request with the page's CSRF token is refused.
    status = page.evaluate(
        """async (key) => {
            const token = document.querySelector('meta[name=csrf-token]').content;
            const response = await fetch(`/api/jobs/${key}/abort`,
                {method: 'POST', headers: {'X-CSRF-Token': token}});
            return response.status;
        }""",
        key,
    )
    assert status == 403
    job = stack.api.get("/api/jobs", params={"state": "scheduled"}).json()["jobs"]
    assert key in [j["key"] for j in job]


def test_live_updates_reconnect_when_the_console_restarts(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    sign_in(page, stack, ADMIN)
    badge = page.locator("[data-live-badge]")
    expect(badge).to_have_text("live")
    stack.stop_console()
    expect(badge).to_have_text("reconnecting")
    stack.start_console()
    expect(badge).to_have_text("live")
    # The session survived the restart, and the counters follow again.
    before = int(page.locator('[data-counter="completed"]').inner_text())
    key = stack.enqueue("greet", {"name": "after restart"})
    stack.wait_for_run(key, "complete")
    expect(page.locator('[data-counter="completed"]')).to_have_text(str(before + 1))


def test_tables_fit_a_phone_and_keep_every_value_visible(browser: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    message = "the provider refused the request because the account is suspended " + "z" * 70
    key = stack.enqueue("fail", {"message": message})
    stack.wait_for_run(key, "failed")
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, stack, ADMIN, "/")
        for path, label, value in (
            (f"/runs?key={key}", "Error", message[:40]),
            ("/jobs?state=failed", "Error", message[:40]),
            ("/cron", "Schedule", "30 3 * * *"),
        ):
            page.goto(stack.base + path)
            cell = page.locator(f'td[data-label="{label}"]', has_text=value).first
            expect(cell).to_be_visible()
            # Nothing runs off the right edge of the page or of any table.
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
            overflowing = page.evaluate(
                """() => Array.from(document.querySelectorAll('table')).filter(
                    (t) => t.scrollWidth > t.parentElement.clientWidth + 1).length"""
            )
            assert overflowing == 0, path
            # Every labelled value lies within the screen's width, and text is not broken
            # mid-word: each cell is wide enough for ordinary words.
            boxes = page.evaluate(
                """() => Array.from(document.querySelectorAll('td[data-label]'))
                    .filter((td) => td.offsetParent !== null)
                    .map((td) => { const r = td.getBoundingClientRect();
                                   return [td.dataset.label, r.right, r.width]; })"""
            )
            assert boxes, path
            assert all(right <= 390 and width >= 200 for _, right, width in boxes), boxes
        page.goto(stack.base + "/cron")
        expect(page.locator('td[data-label="Next run"]').first).to_be_visible()
        expect(page.locator('td[data-label="Last run"]').first).to_be_visible()
    finally:
        context.close()
