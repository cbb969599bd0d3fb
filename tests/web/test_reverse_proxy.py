"""Local mode behind a real nginx: the console must not take proxied visitors for its own
machine. nginx is started by the test on a spare port (Debian's package; `.ci/run`
installs it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.admin import Admin
from conveyor.web.server import serve

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nginx_available() -> None:
    if not Path(NGINX).exists():
        reason = "nginx is not installed (apt-get install nginx-light)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true: this test may not be skipped")
        pytest.skip(reason)


@contextlib.asynccontextmanager
async def console_port(admin: Admin) -> AsyncIterator[int]:
    """A console without credentials on 127.0.0.1 (local mode), served for real."""
    port = _free_port()
    started = asyncio.Event()
    task = asyncio.create_task(serve(admin, "127.0.0.1", port, started=started))
    await asyncio.wait_for(started.wait(), 10)
    try:
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def nginx(tmp_path: Path, upstream: int, extra: str = "") -> Iterator[int]:
    """nginx in front of ``upstream`` with a bare ``proxy_pass`` (plus ``extra`` lines)."""
    port = _free_port()
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / name).mkdir(exist_ok=True)
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"""
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/client_body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            {extra}
        }}
    }}
}}
"""
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {process.stderr.read() if process.stderr else ''!r}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    "extra",
    ["", "proxy_http_version 1.1; proxy_set_header X-Forwarded-For $remote_addr;"],
    ids=["bare-proxy-pass", "http11-with-x-forwarded-for"],
)
async def test_a_local_console_behind_nginx_lets_nobody_in(
    nginx_available: None, admin: Admin, tmp_path: Path, extra: str
) -> None:
    async with console_port(admin) as upstream, httpx.AsyncClient(timeout=10) as client:
        direct = await client.get(f"http://127.0.0.1:{upstream}/api/overview")
        assert direct.status_code == 200
        with nginx(tmp_path, upstream, extra) as port:
            proxied = await client.get(f"http://127.0.0.1:{port}/api/overview")
            assert proxied.status_code == 401, proxied.text
            page = await client.get(f"http://127.0.0.1:{port}/")
            assert page.status_code == 401 and "CONVEYOR_AUTH_PASSWORD" in page.text
            assert (await client.get(f"http://127.0.0.1:{port}/livez")).status_code == 200
