"""Redis deployments of the tests' own: a three-master Redis Cluster, and a master with a
replica watched by sentinels, each ``redis-server`` on spare ports, stopped afterwards.

They need ``redis-server`` and ``redis-cli`` (7.0 or newer for the Cluster's sharded
pub/sub) on the ``PATH``; :func:`missing_tools` says when they are not.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: Seconds a deployment gets to come up.
START_TIMEOUT = 30.0


def missing_tools() -> str | None:
    """Why no deployment can be started here, or None."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (needed to start a local Redis Cluster/Sentinel)"
    return None


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def spare_ports(count: int) -> list[int]:
    """``count`` free ports whose Cluster bus ports (+10000) are free too."""
    chosen: list[int] = []
    rng = random.Random()
    while len(chosen) < count:
        port = rng.randrange(20000, 30000)
        if port not in chosen and _free(port) and _free(port + 10000):
            chosen.append(port)
    return chosen


def _cli(port: int, *args: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.stdout


def _wait(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {START_TIMEOUT:g} s")
        time.sleep(0.05)


class _Servers:
    """The processes started, killed in reverse order on :meth:`stop`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int, *options: str, sentinel: bool = False) -> None:
        """A ``redis-server`` (or sentinel) on ``port``, its files in the folder."""
        work = self.folder / str(port)
        work.mkdir(parents=True, exist_ok=True)
        args = ["redis-server"]
        if sentinel:
            config = work / "sentinel.conf"
            config.write_text("\n".join(options) + "\n")
            args += [str(config), "--sentinel"]
            options = ()
        args += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(work)]
        if not sentinel:
            args += ["--save", "", "--appendonly", "no"]
        with open(work / "log", "wb") as log:
            process = subprocess.Popen([*args, *options], stdout=log, stderr=log)
        self.processes[port] = process

        def up() -> bool:
            if process.poll() is not None:  # the port was taken meanwhile, say
                log = (work / "log").read_text(errors="replace")[-1000:]
                raise RuntimeError(f"redis-server on port {port} exited: {log}")
            return _cli(port, "PING").strip() == "PONG"

        _wait(f"redis-server on port {port}", up)

    def stop(self) -> None:
        """Kill every process started."""
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait()


@contextlib.contextmanager
def redis_cluster(
    folder: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 5000
) -> Iterator[list[int]]:
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each, on spare
    ports; yields the ports (``CLUSTER SLOTS`` tells which are masters). A master that
    stops answering for ``node_timeout_ms`` is replaced by one of its replicas.

    Raises:
        RuntimeError: When it does not come up.
    """
    servers = _Servers(folder)
    try:
        ports = spare_ports(masters * (1 + replicas))
        for port in ports:
            servers.start(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
            )
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
        for port in ports:
            _wait(
                f"the cluster as seen from port {port}",
                lambda port=port: "cluster_state:ok" in _cli(port, "CLUSTER", "INFO"),  # type: ignore[misc]
            )
            if "role:slave" in _cli(port, "INFO", "replication"):
                _wait(
                    f"the replica on port {port} in sync",
                    lambda port=port: (
                        "master_link_status:up"  # type: ignore[misc]
                        in _cli(port, "INFO", "replication")
                    ),
                )
        yield ports
    finally:
        servers.stop()


def cluster_url(ports: list[int]) -> str:
    """The ``redis+cluster://`` URL of a cluster's nodes."""
    return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)


@contextlib.contextmanager
def redis_sentinel(
    folder: Path, service: str = "conveyor", replicas: int = 1, sentinels: int = 2
) -> Iterator[tuple[int, list[int], list[int]]]:
    """A master, ``replicas`` replicas and ``sentinels`` sentinels (quorum 1) watching it
    as ``service``; yields (master port, replica ports, sentinel ports).

    Every server runs with ``maxmemory-policy noeviction``, as the docs advise.

    Raises:
        RuntimeError: When it does not come up.
    """
    servers = _Servers(folder)
    try:
        master, *others = spare_ports(1 + replicas + sentinels)
        followers, watchers = others[:replicas], others[replicas:]
        advised = ("--maxmemory-policy", "noeviction")
        servers.start(master, *advised)
        for port in followers:
            servers.start(port, "--replicaof", "127.0.0.1", str(master), *advised)
        for port in followers:
            _wait(
                f"the link of replica {port} to its master",
                lambda port=port: (
                    "master_link_status:up"  # type: ignore[misc]
                    in _cli(port, "INFO", "replication")
                ),
            )
        for port in watchers:
            servers.start(
                port,
                f"sentinel monitor {service} 127.0.0.1 {master} 1",
                f"sentinel down-after-milliseconds {service} 1000",
                f"sentinel failover-timeout {service} 10000",
                sentinel=True,
            )
        for port in watchers:
            _wait(
                f"sentinel on port {port} to see the replicas",
                lambda port=port: all(  # type: ignore[misc]
                    str(f) in _cli(port, "SENTINEL", "REPLICAS", service) for f in followers
                ),
            )
        yield master, followers, watchers
    finally:
        servers.stop()
