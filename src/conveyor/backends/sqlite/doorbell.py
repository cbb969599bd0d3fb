"""Waking waiters of other processes at once: a Unix datagram socket per waiting backend.

A backend that waits (for work, or for a job to finish) binds a datagram socket in a
directory that every process of the database file can compute: ``<database>-wake/``
beside the file. Where that directory cannot be used (no permission to create it, or its
paths are longer than ``AF_UNIX`` allows), the socket goes to a private directory of the
user's temporary directory named after a hash of the database's real path. A backend
whose commit makes a job claimable, or changes a job someone may wait for, rings every
socket of both directories once it has committed: a datagram of a few bytes naming the
channels that changed.

The datagram only hurries a wake-up along; nothing depends on it. The ``PRAGMA
data_version`` poll of :mod:`.watcher` stays, and catches whatever a datagram does not
reach: processes of another machine, a socket that could not be bound, a platform
without ``AF_UNIX``, a datagram dropped because its receiver's queue was full.

Failures are never waited for and never raised:

- Sending never blocks (``EAGAIN``: the receiver already has a datagram waiting).
- A socket nobody is bound to any more (its process died) answers ``ECONNREFUSED``; the
  sender deletes its file. One that vanished meanwhile (``ENOENT``) or that the sender
  may not write to (another user's) is passed over.
- Socket names start with a tag of the running kernel (its boot id), so that a process
  of another machine sharing the directory neither rings nor deletes sockets of this one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from conveyor.backends.sqlite.owners import boot_id

#: ``sun_path`` holds 108 bytes on Linux and 104 on macOS and the BSDs, its NUL included.
MAX_SOCKET_PATH = 103
_SUFFIX = ".sock"
_RECEIVE_SIZE = 64


def kernel_tag() -> str:
    """Eight hex digits naming the running kernel: the same for every process of this
    host (containers included), different on another host or after a reboot."""
    identity = boot_id() or socket.gethostname()
    return hashlib.sha256(identity.encode()).hexdigest()[:8]


def directories_for(database: Path) -> tuple[Path, Path]:
    """Where sockets of ``database`` are bound: beside it, and the private fallback."""
    real = Path(os.path.realpath(database))
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    user = os.getuid() if hasattr(os, "getuid") else 0
    return (
        real.with_name(f"{real.name}-wake"),
        Path(tempfile.gettempdir()) / f"conveyor-{user}-{digest}",
    )


class Doorbell:
    """This backend's socket (bound on first use) and the ringing of everybody else's.

    :meth:`ring` is called on the database thread, right after a commit; :meth:`bind`,
    :meth:`drain` and :meth:`close` on the event loop's thread. They share no mutable
    state beyond the bound path, read by :meth:`ring` to skip its own socket (this
    backend's own waiters are woken in-process).

    Args:
        beside: The directory beside the database, shared by every user of the file.
        private: The fallback directory, private to this user.
        tag: :func:`kernel_tag`.
    """

    def __init__(self, beside: Path, private: Path, tag: str) -> None:
        self._directories = (str(beside), str(private))
        self._private = str(private)
        self._prefix = f"{tag}-"
        self._sender: socket.socket | None = None
        self._receiver: socket.socket | None = None
        self._address: str | None = None
        self._bound_by = 0  # the pid that bound it: a forked child must not delete it
        self._unusable = False

    @classmethod
    def for_database(cls, database: Path) -> Doorbell:
        """The doorbell of ``database``'s file, on this host."""
        return cls(*directories_for(database), kernel_tag())

    @property
    def address(self) -> str | None:
        """The path of this backend's socket, None while it is not bound."""
        return self._address

    def ring(self, channels: Iterable[str]) -> int:
        """Send the channels' names to every socket of this host but this backend's own.

        Never blocks and never raises.

        Returns:
            How many sockets it reached.
        """
        sender = self._sender
        if sender is None:
            sender = self._sender = _datagram_socket()
            if sender is None:
                return 0
        message = " ".join(channels).encode()
        reached = 0
        for directory in self._directories:
            try:
                names = os.listdir(directory)
            except OSError:
                continue  # not created (nobody waits there) or not readable
            for name in names:
                if not name.startswith(self._prefix) or not name.endswith(_SUFFIX):
                    continue
                path = os.path.join(directory, name)
                if path == self._address:
                    continue
                try:
                    sender.sendto(message, path)
                except ConnectionRefusedError:
                    _unlink(path)  # nobody is bound to it: its process is gone
                except OSError:
                    pass  # vanished meanwhile, its queue is full, or another user's
                else:
                    reached += 1
        return reached

    def bind(self) -> socket.socket | None:
        """This backend's socket, bound on the first call; None where none can be bound.

        A directory that cannot be used (creation refused, a path too long for
        ``AF_UNIX``, a private directory owned by someone else) is passed over; when
        both are, the backend relies on the poll, and binding is not tried again until
        :meth:`close`.
        """
        if self._receiver is not None or self._unusable:
            return self._receiver
        name = f"{self._prefix}{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        for directory in self._directories:
            path = os.path.join(directory, name)
            if len(os.fsencode(path)) > MAX_SOCKET_PATH:
                continue
            receiver = _datagram_socket()
            if receiver is None:
                break  # no AF_UNIX datagrams on this platform
            if _bind(receiver, directory, path, private=directory == self._private):
                self._receiver, self._address, self._bound_by = receiver, path, os.getpid()
                return receiver
            receiver.close()
        self._unusable = True
        return None

    def drain(self) -> set[str]:
        """The channels named by every datagram received so far (never blocks)."""
        channels: set[str] = set()
        receiver = self._receiver
        while receiver is not None:
            try:
                data = receiver.recv(_RECEIVE_SIZE)
            except OSError:  # BlockingIOError: nothing more
                break
            channels.update(data.decode("ascii", "replace").split())
        return channels

    def close(self) -> None:
        """Unbind and delete this backend's socket (and its directory, once nobody else's
        socket is in it) and close the sender. Idempotent."""
        receiver, self._receiver = self._receiver, None
        address, self._address = self._address, None
        sender, self._sender = self._sender, None
        self._unusable = False
        if address is not None and self._bound_by == os.getpid():
            _unlink(address)  # first: a sender meanwhile gets ENOENT, not a dead socket
            with contextlib.suppress(OSError):  # ENOTEMPTY: other processes wait there
                os.rmdir(os.path.dirname(address))
        for sock in (receiver, sender):
            if sock is not None:
                sock.close()


def _datagram_socket() -> socket.socket | None:
    family = getattr(socket, "AF_UNIX", None)
    if family is None:
        return None
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return None
    sock.setblocking(False)
    return sock


def _bind(receiver: socket.socket, directory: str, path: str, private: bool) -> bool:
    # Twice: another process may remove the directory, found empty, between the two steps.
    for _ in range(2):
        try:
            _make_directory(directory, private)
            receiver.bind(path)
        except FileNotFoundError:
            continue
        except OSError:
            return False
        return True
    return False


def _make_directory(directory: str, private: bool) -> None:
    if not private:
        os.makedirs(directory, exist_ok=True)
        return
    # In a shared temporary directory anyone may have made this name first: use it only
    # if it is a real directory of ours that nobody else can write to.
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    info = os.lstat(directory)
    owner = os.getuid() if hasattr(os, "getuid") else info.st_uid
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or info.st_mode & 0o022:
        raise PermissionError(f"{directory} is not a private directory of this user")


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
