"""A PgBouncer process for tests, in front of the test PostgreSQL server.

:class:`PgBouncer` writes a configuration of its own (transaction pooling by default, trust
authentication, every database forwarded to the server of a PostgreSQL URL), starts
Debian's ``pgbouncer`` on a spare port of ``127.0.0.1`` and stops it on :meth:`close`::

    bouncer = PgBouncer(postgres_url(), tmp_path).start()
    try:
        queue = Queue.from_url(bouncer.queue_url())  # through PgBouncer, own schema
        ...
    finally:
        bouncer.close()

PgBouncer refuses to run as root: as root it is started with ``-u nobody`` (it reads its
files before it drops privileges and logs to the pipe it was given).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
import weakref
from pathlib import Path
from typing import IO, Self
from urllib.parse import quote, urlsplit, urlunsplit

#: Seconds PgBouncer may take to listen, or to exit once asked to.
START_TIMEOUT_S = 10.0
#: How many spare ports are tried (another process may take one between its choice and
#: PgBouncer's bind).
PORT_ATTEMPTS = 3


def binary() -> str | None:
    """The ``pgbouncer`` executable, or None when it is not installed."""
    # Debian installs it in /usr/sbin, which a user's PATH may lack.
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


def _spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


def _unprivileged_user() -> str:
    """Who PgBouncer runs as when started by root (it refuses to run as root)."""
    try:
        return pwd.getpwnam("nobody").pw_name
    except KeyError:
        raise RuntimeError(
            "PgBouncer refuses to run as root, and there is no user 'nobody' to run it as"
        ) from None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop PgBouncer at once (SIGTERM: an immediate shutdown), killing it if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(START_TIMEOUT_S)


class PgBouncer:
    """A PgBouncer process forwarding to the server of ``server_url``.

    Args:
        server_url: A PostgreSQL URL of the server (its user must be trusted there).
        directory: Where its configuration and log go (the test's own directory).
        pool_mode: PgBouncer's ``pool_mode``.
        pool_size: Server connections per database and user (``default_pool_size``).
    """

    def __init__(
        self,
        server_url: str,
        directory: Path,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 10,
    ) -> None:
        parts = urlsplit(server_url)
        self.server_url = server_url
        self.server_host = parts.hostname or "127.0.0.1"
        self.server_port = parts.port or 5432
        self.user = parts.username or "postgres"
        self.directory = directory
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        #: Where it listens, once started.
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._reuse_port = 0
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], PgBouncer] | None = None

    def __repr__(self) -> str:
        return f"PgBouncer<127.0.0.1:{self.port} -> {self.server_host}:{self.server_port}>"

    def _config(self, port: int) -> Path:
        users = self.directory / "pgbouncer-users.txt"
        users.write_text(f'"{self.user}" ""\n')
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.server_host} port={self.server_port}\n\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"admin_users = {self.user}\n"
            f"pool_mode = {self.pool_mode}\n"
            "max_client_conn = 1000\n"
            f"default_pool_size = {self.pool_size}\n"
            # A test stuck waiting for a server connection fails instead of hanging.
            "query_wait_timeout = 30\n"
        )
        return config

    def start(self) -> Self:
        """Start PgBouncer and wait until it listens.

        Raises:
            RuntimeError: When it is not installed, already started, or does not start
                (its log is in the message).
        """
        if self._process is not None:
            raise RuntimeError(f"{self!r} is already started")
        executable = binary()
        if executable is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install -y pgbouncer)")
        self.directory.mkdir(parents=True, exist_ok=True)
        as_user = ["-u", _unprivileged_user()] if os.geteuid() == 0 else []
        for _ in range(PORT_ATTEMPTS):
            port = self._reuse_port or _spare_port()
            config = self._config(port)
            log = (self.directory / "pgbouncer.log").open("ab")
            process = subprocess.Popen(
                [executable, *as_user, str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + START_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                if _listening(port):
                    self._process, self._log, self.port = process, log, port
                    # Stopped at the latest when this process exits, if close() never ran.
                    self._finalizer = weakref.finalize(self, _stop, process)
                    return self
                time.sleep(0.02)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(START_TIMEOUT_S)
            log.close()
        raise RuntimeError(f"{self!r} did not start; its log:\n{self.log()}")

    def restart(self) -> None:
        """Stop PgBouncer (its clients are disconnected) and start it again on the same port,
        as a restart in production does.

        Raises:
            RuntimeError: When it was not started, or does not start again.
        """
        if self.port == 0:
            raise RuntimeError(f"{self!r} is not started; call start() first")
        port = self.port
        self.close()
        self._reuse_port = port
        try:
            self.start()
        finally:
            self._reuse_port = 0

    def log(self) -> str:
        """Everything PgBouncer logged so far."""
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Stop PgBouncer (an immediate shutdown: its clients are disconnected)."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is not None:
            _stop(process)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.port = 0

    def url(self, original: str | None = None) -> str:
        """``original`` (by default the server's URL) through PgBouncer: its host and port
        replaced by PgBouncer's.

        Raises:
            RuntimeError: When PgBouncer is not started.
        """
        if self.port == 0:
            raise RuntimeError(f"{self!r} is not started; call start() first")
        parts = urlsplit(original or self.server_url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{self.port}"))

    def admin_url(self) -> str:
        """The URL of PgBouncer's admin console (``SHOW POOLS`` ...)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/pgbouncer"

    def queue_url(self, wake: str = "direct", schema: str | None = None) -> str:
        """A queue URL through PgBouncer in transaction mode, on a schema of its own.

        Args:
            wake: ``"direct"``: LISTEN and presence locks on a direct connection to the
                server (``direct_url``); ``"poll"``: workers poll (``poll_interval=0.2``).
            schema: The schema; a new ``test_<random>`` one by default.
        """
        schema = schema or f"test_{uuid.uuid4().hex[:10]}"
        base = self.url()
        wake_option = (
            f"direct_url={quote(self.server_url, safe='')}"
            if wake == "direct"
            else "poll_interval=0.2"
        )
        separator = "&" if "?" in base else "?"
        return f"{base}{separator}schema={schema}&pgbouncer=transaction&{wake_option}"


__all__ = ["PgBouncer", "binary"]
