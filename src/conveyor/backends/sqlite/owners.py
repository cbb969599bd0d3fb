"""Which process holds a lease, and whether it is gone: faster recovery after a kill.

Workers that share an SQLite file share a host, so the backend can tell that a lease's
owner died without waiting for the lease to run out. A claim (or recover) records the
claiming process once per worker id and backend (a row of ``owners``: host, pid, start
time) and points the job at it (``jobs.owner``).
:meth:`~conveyor.backends.sqlite.SQLiteBackend.expire_dead_leases` then ends the leases
whose owner is gone. A claim or recover with ``vouch=False`` (the HTTP proxy's, for its
remote workers) records no owner: a job whose owner is unknown (NULL) is never ended early,
its lease ends only when it expires.

"Gone" is decided only when sure, and only for a process of this very host: the same host
name, boot (``/proc/sys/kernel/random/boot_id``) and PID namespace, so that two
containers sharing a file and a host name never judge one another's pids. A process is
gone when its pid no longer exists, when it is a zombie (killed, not yet reaped), or when
the pid now belongs to a process that started at another time (the pid was reused). A
pid that exists counts as alive wherever the start time cannot be read: on such systems a
reused pid only delays recovery until the lease expires, it never ends a live lease.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3

# Field 22 of /proc/<pid>/stat, counted after the ")" that closes field 2 (the command,
# which may itself hold spaces and parentheses): state is field 3.
_STATE, _START_TIME = 0, 19


@dataclasses.dataclass(frozen=True, slots=True)
class Process:
    """A process as the owners table records it.

    Attributes:
        host: :func:`host_identity` of the host it runs on.
        pid: Its pid, in that host's PID namespace.
        started: Its start time in clock ticks after boot, None where /proc is missing.
    """

    host: str
    pid: int
    started: int | None


def host_identity() -> str:
    """This host as processes that can see one another's pids share it: host name, boot id
    and PID namespace ("?" for a part this system does not tell).
    """
    boot = boot_id()
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return f"{socket.gethostname()} boot={boot or '?'} pidns={namespace or '?'}"


def boot_id() -> str | None:
    """The running kernel's boot id (Linux), the same for all its PID namespaces."""
    return _read_text("/proc/sys/kernel/random/boot_id")


def this_process() -> Process:
    """The calling process."""
    pid = os.getpid()
    stat = _stat(pid)
    return Process(host_identity(), pid, None if stat is None else stat[1])


def is_gone(pid: int, started: int | None) -> bool:
    """Whether the process recorded as ``pid`` (started at ``started``) on this host is gone.

    False whenever unsure: on a system without ``kill(pid, 0)`` semantics (Windows), for a
    pid that exists and whose start time cannot be compared, and on unexpected errors.
    """
    if os.name != "posix" or pid <= 0:  # pid 0 and below name process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return False
    stat = _stat(pid)
    if stat is None:
        return False  # it exists; /proc says no more (or it just exited: next sweep)
    state, start_time = stat
    if state in ("Z", "X"):
        return True  # exited, not reaped yet by its parent
    return started is not None and start_time != started


def _stat(pid: int) -> tuple[str, int] | None:
    """State and start time from ``/proc/<pid>/stat``; None when it cannot be read."""
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[_STATE], int(fields[_START_TIME])
    except (IndexError, ValueError):
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read().strip()
    except OSError:
        return None


class OwnerRecords:
    """This process's rows of the owners table for one queue, one per worker id.

    A row is inserted by the first claim or recover of a worker id, inside that operation's
    transaction, and remembered once the transaction committed: later claims add no
    statement. The memory is dropped in a forked child (another pid) and on reconnect.

    Args:
        queue: The queue name.
        queries: The named queries of ``queries.sql``.
    """

    def __init__(self, queue: str, queries: dict[str, str]) -> None:
        self.queue = queue
        self.q = queries
        self._ids: dict[str, int] = {}
        self._pid = os.getpid()
        self._me: Process | None = None

    def recorded(self, worker_id: str) -> int | None:
        """The committed row of ``worker_id`` in this process, if any."""
        if self._pid != os.getpid():
            self.forget()
        return self._ids.get(worker_id)

    def insert(self, conn: sqlite3.Connection, worker_id: str) -> int:
        """Insert a row for ``worker_id`` in the caller's transaction; returns its id.

        Call :meth:`remember` once the transaction has committed: a row rolled back must
        not be pointed at (AUTOINCREMENT would give its id to the next row).
        """
        me = self.me()
        params = {
            "queue": self.queue,
            "worker_id": worker_id,
            "host": me.host,
            "pid": me.pid,
            "started": me.started,
        }
        # lastrowid is set after an INSERT; 0 would point at no row, which is never judged.
        return conn.execute(self.q["insert_owner"], params).lastrowid or 0

    def me(self) -> Process:
        """This process (read once per process)."""
        if self._pid != os.getpid():
            self.forget()
        if self._me is None:
            self._me = this_process()
        return self._me

    def remember(self, worker_id: str, owner: int) -> None:
        """Keep ``owner`` as the committed row of ``worker_id``."""
        self._ids[worker_id] = owner

    def forget(self) -> None:
        """Drop every remembered row (the rows were deleted, or this is another process)."""
        self._ids.clear()
        self._pid = os.getpid()
        self._me = None
