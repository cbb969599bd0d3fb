"""Who may use the console: principals, the ways to authenticate them, and the local rule.

A request is authenticated, in order, by:

1. an ``Authorization: Bearer`` token (:class:`TokenAuth`);
2. an ``Authorization: Basic`` header (:class:`BasicAuth`);
3. the console's own signed session cookie, set by its sign-in form (users of
   :class:`BasicAuth`);
4. the host application's callable (``auth=callable(request) -> Principal | None``), which
   can check the host's own session user against an allow-list.

With no authentication configured at all, the console serves requests from a loopback
address, and only when it is not ``public`` (bound to 127.0.0.1 or localhost): nothing is
public by default.

Principals have one of two roles: ``read`` sees everything; ``admin`` may also enqueue,
retry and abort.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import ipaddress
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection

from conveyor.errors import ConfigurationError

Role = Literal["read", "admin"]
ROLES: tuple[Role, ...] = ("read", "admin")

#: A host application's check: the principal of a request, or None (not signed in).
AuthCallable = Callable[[HTTPConnection], "Principal | Awaitable[Principal | None] | None"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone using the console.

    Attributes:
        name: Shown in the console and recorded as the ``actor`` of every action.
        role: ``read`` (look only) or ``admin`` (also enqueue, retry, abort).
        via: How they were authenticated: ``token``, ``basic``, ``session``, ``host`` or
            ``local``.
    """

    name: str
    role: Role = "read"
    via: str = "host"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigurationError(f"unknown role {self.role!r}; use 'read' or 'admin'")

    @property
    def can_act(self) -> bool:
        """Whether this principal may change the queue."""
        return self.role == "admin"


def _check_role(role: str, what: str) -> Role:
    if role not in ROLES:
        raise ConfigurationError(f"{what}: unknown role {role!r}; use 'read' or 'admin'")
    return role


class BasicAuth:
    """Users with passwords, for ``Authorization: Basic`` and the sign-in form.

    Args:
        users: User name to ``(password, role)``, or to a password alone (role ``admin``).

    Raises:
        ConfigurationError: For an empty password or an unknown role.
    """

    def __init__(self, users: Mapping[str, str | tuple[str, str]]) -> None:
        self.users: dict[str, tuple[str, Role]] = {}
        for name, value in users.items():
            password, role = (value, "admin") if isinstance(value, str) else value
            if not password:
                raise ConfigurationError(f"console user {name!r} has an empty password")
            self.users[name] = (password, _check_role(role, f"console user {name!r}"))

    def __repr__(self) -> str:
        return f"BasicAuth(users={sorted(self.users)})"

    def check(self, name: str, password: str) -> Principal | None:
        """The principal for a user name and password, or None when they don't match."""
        # Compare against something even for an unknown user, so timing tells nothing.
        expected, role = self.users.get(name, ("\0" + secrets.token_hex(8), "read"))
        if hmac.compare_digest(expected.encode(), password.encode()) and name in self.users:
            return Principal(name, role, "basic")
        return None

    def role_of(self, name: str) -> Role | None:
        """The role of a known user (a session stays valid only while its user exists)."""
        entry = self.users.get(name)
        return entry[1] if entry else None

    def fingerprint(self) -> bytes:
        """Material a derived session key changes with (a new password ends sessions)."""
        return repr(sorted(self.users.items())).encode()


class TokenAuth:
    """Bearer tokens, for scripts and monitoring (no CSRF token needed).

    Args:
        tokens: Token to the principal it stands for, or to a role (the principal is then
            named ``token:<first 4 characters>``).
    """

    def __init__(self, tokens: Mapping[str, Principal | str]) -> None:
        self.tokens: dict[str, Principal] = {}
        for token, value in tokens.items():
            if len(token) < 8:
                raise ConfigurationError("console bearer tokens need at least 8 characters")
            if isinstance(value, Principal):
                self.tokens[token] = Principal(value.name, value.role, "token")
            else:
                role = _check_role(value, "console token")
                self.tokens[token] = Principal(f"token:{token[:4]}", role, "token")

    def __repr__(self) -> str:
        return f"TokenAuth(principals={sorted(p.name for p in self.tokens.values())})"

    def check(self, token: str) -> Principal | None:
        """The principal of a token, or None."""
        found = None
        for candidate, principal in self.tokens.items():
            if hmac.compare_digest(candidate.encode(), token.encode()):
                found = principal
        return found

    def fingerprint(self) -> bytes:
        """Material a derived session key changes with."""
        return repr(sorted(self.tokens)).encode()


AuthOption = BasicAuth | TokenAuth | AuthCallable


def auth_from_env(environ: Mapping[str, str] | None = None) -> list[AuthOption]:
    """Authentication configured by environment variables.

    * ``CONVEYOR_AUTH_PASSWORD`` (or SAQ's ``AUTH_PASSWORD``) with ``CONVEYOR_AUTH_USER``
      (or ``AUTH_USER``; ``admin`` by default): a user with the ``admin`` role.
    * ``CONVEYOR_AUTH_READ_PASSWORD`` with ``CONVEYOR_AUTH_READ_USER`` (``viewer`` by
      default): a user with the ``read`` role.
    * ``CONVEYOR_AUTH_TOKEN`` / ``CONVEYOR_AUTH_READ_TOKEN``: bearer tokens of each role.

    Args:
        environ: The variables; ``os.environ`` by default.
    """
    env = os.environ if environ is None else environ
    users: dict[str, str | tuple[str, str]] = {}
    password = env.get("CONVEYOR_AUTH_PASSWORD") or env.get("AUTH_PASSWORD")
    if password:
        name = env.get("CONVEYOR_AUTH_USER") or env.get("AUTH_USER") or "admin"
        users[name] = (password, "admin")
    read_password = env.get("CONVEYOR_AUTH_READ_PASSWORD")
    if read_password:
        users[env.get("CONVEYOR_AUTH_READ_USER") or "viewer"] = (read_password, "read")
    tokens: dict[str, Principal | str] = {}
    if env.get("CONVEYOR_AUTH_TOKEN"):
        tokens[env["CONVEYOR_AUTH_TOKEN"]] = "admin"
    if env.get("CONVEYOR_AUTH_READ_TOKEN"):
        tokens[env["CONVEYOR_AUTH_READ_TOKEN"]] = "read"
    options: list[AuthOption] = []
    if users:
        options.append(BasicAuth(users))
    if tokens:
        options.append(TokenAuth(tokens))
    return options


def normalize_auth(auth: AuthOption | Iterable[AuthOption] | None) -> list[AuthOption]:
    """The list of authentication options ``create_app(auth=...)`` was given.

    None reads the environment (:func:`auth_from_env`).

    Raises:
        ConfigurationError: For something that is not an authentication option.
    """
    if auth is None:
        return auth_from_env()
    items = [auth] if isinstance(auth, BasicAuth | TokenAuth) or callable(auth) else list(auth)
    for item in items:
        if not (isinstance(item, BasicAuth | TokenAuth) or callable(item)):
            raise ConfigurationError(
                f"auth: expected BasicAuth, TokenAuth or a callable(request), got {item!r}"
            )
    return items


def is_loopback_host(host: str) -> bool:
    """Whether a bind address or client address is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def derive_secret(options: Iterable[AuthOption], secret_key: str | None) -> bytes:
    """The key that signs sessions and CSRF tokens.

    An explicit key (or ``CONVEYOR_SECRET_KEY``) wins; otherwise it is derived from the
    configured passwords and tokens, so sessions survive a restart and end when a password
    changes; with neither, it is random (local use).
    """
    explicit = secret_key or os.environ.get("CONVEYOR_SECRET_KEY")
    if explicit:
        return hashlib.sha256(b"conveyor-console:" + explicit.encode()).digest()
    material = [o.fingerprint() for o in options if isinstance(o, BasicAuth | TokenAuth)]
    if not material:
        return secrets.token_bytes(32)
    return hashlib.sha256(b"conveyor-console:" + b"\0".join(material)).digest()


async def call_host_auth(check: AuthCallable, connection: HTTPConnection) -> Principal | None:
    """Call a host application's check, sync or async, and validate what it returns."""
    result = check(connection)
    if inspect.isawaitable(result):
        result = await result
    if result is not None and not isinstance(result, Principal):
        raise TypeError(f"the console's auth callable returned {result!r}; expected a Principal")
    return result


__all__ = [
    "ROLES",
    "AuthCallable",
    "AuthOption",
    "BasicAuth",
    "Principal",
    "Role",
    "TokenAuth",
    "auth_from_env",
    "call_host_auth",
    "derive_secret",
    "is_loopback_host",
    "normalize_auth",
]
