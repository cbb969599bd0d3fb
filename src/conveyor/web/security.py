"""The console's gate: who a request comes from, signed sessions and CSRF tokens.

Sessions and CSRF tokens are HMAC-signed with the console's key (see
:func:`conveyor.web.auth.derive_secret`). CSRF protection is a signed double submit: an
``HttpOnly``, ``SameSite=Lax`` cookie holds a random nonce; forms carry, and JavaScript
sends as ``X-CSRF-Token``, a token that signs that nonce together with the principal's
name. A state-changing request must present a token that matches both the cookie and the
principal; requests authenticated by a bearer token are exempt (browsers never send one on
their own).

Cookie names carry a hash of the mount path, so two consoles mounted in one site keep
separate sessions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

from starlette.requests import HTTPConnection

from conveyor.web.auth import (
    AuthOption,
    BasicAuth,
    Principal,
    TokenAuth,
    call_host_auth,
    derive_secret,
    is_loopback_host,
)

#: Seconds a sign-in lasts.
SESSION_MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """HMAC-SHA256 signatures over short text values, with an issue time."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def sign(self, value: str, *, issued: float | None = None) -> str:
        """``value`` with its issue time and signature appended."""
        text = f"{value}~{int(time.time() if issued is None else issued)}"
        return f"{text}~{self._mac(text)}"

    def unsign(self, token: str, max_age_s: float | None = None) -> str | None:
        """The value of a signed token, or None if it is forged, malformed or too old."""
        text, _, mac = token.rpartition("~")
        value, _, issued = text.rpartition("~")
        if not text or not hmac.compare_digest(mac, self._mac(text)) or not issued.isdigit():
            return None
        if max_age_s is not None and time.time() - int(issued) > max_age_s:
            return None
        return value


def cookie_name(base: str, root_path: str) -> str:
    """A cookie name unique to the console mounted at ``root_path``."""
    if not root_path:
        return base
    return f"{base}_{hashlib.sha256(root_path.encode()).hexdigest()[:10]}"


def cookie_path(root_path: str) -> str:
    """The path the console's cookies are scoped to."""
    return (root_path or "") + "/"


class Gate:
    """Decides who a request comes from and whether it may act.

    Args:
        options: The authentication options (see :func:`conveyor.web.auth.normalize_auth`).
        public: Whether the console is reachable from other machines (then, without
            authentication, nobody gets in).
        secret_key: The signing key's source (see :func:`derive_secret`).
        session_max_age_s: Seconds a sign-in lasts.
        login_url: Where to send people who are not signed in, for a host application
            that signs them in itself.
    """

    def __init__(
        self,
        options: list[AuthOption],
        *,
        public: bool,
        secret_key: str | None = None,
        session_max_age_s: float = SESSION_MAX_AGE_S,
        login_url: str | None = None,
    ) -> None:
        self.basic = [o for o in options if isinstance(o, BasicAuth)]
        self.tokens = [o for o in options if isinstance(o, TokenAuth)]
        self.hosts = [o for o in options if not isinstance(o, BasicAuth | TokenAuth)]
        self.public = public
        self.session_max_age_s = session_max_age_s
        self.login_url = login_url
        self.signer = Signer(derive_secret(options, secret_key))

    @property
    def configured(self) -> bool:
        """Whether any authentication is configured (else: local use only)."""
        return bool(self.basic or self.tokens or self.hosts)

    @property
    def has_login_form(self) -> bool:
        """Whether the console's own sign-in form can sign anyone in."""
        return bool(self.basic)

    def local_allowed(self, connection: HTTPConnection) -> bool:
        """Local use: no authentication, not public, and the client is this machine.

        The ``Host`` header must name this machine too, so that a web page whose domain
        was rebound to 127.0.0.1 (DNS rebinding) cannot read or drive the console.
        """
        client = connection.client
        host = connection.url.hostname or ""
        return (
            not self.configured
            and not self.public
            and client is not None
            and is_loopback_host(client.host)
            and (is_loopback_host(host) or host.endswith(".localhost"))
        )

    async def principal(self, connection: HTTPConnection) -> Principal | None:
        """Who the request comes from, or None when nobody is signed in."""
        header = connection.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return self._check_token(credentials.strip())
        if scheme.lower() == "basic" and credentials:
            return self._check_basic(credentials.strip())
        session = self._session(connection)
        if session is not None:
            return session
        for check in self.hosts:
            found = await call_host_auth(check, connection)
            if found is not None:
                return found
        if self.local_allowed(connection):
            return Principal("local", "admin", "local")
        return None

    def _check_token(self, token: str) -> Principal | None:
        for option in self.tokens:
            found = option.check(token)
            if found is not None:
                return found
        return None

    def _check_basic(self, credentials: str) -> Principal | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        return self.check_password(name, password) if sep else None

    def check_password(self, name: str, password: str) -> Principal | None:
        """The principal for a user name and password (the sign-in form), or None."""
        for option in self.basic:
            found = option.check(name, password)
            if found is not None:
                return found
        return None

    # Sessions

    def session_cookie_name(self, connection: HTTPConnection) -> str:
        """The name of this console's session cookie."""
        return cookie_name("conveyor_session", connection.scope.get("root_path", ""))

    def session_value(self, principal: Principal) -> str:
        """The signed cookie value of a sign-in."""
        return self.signer.sign(f"{principal.name}|{principal.role}")

    def _session(self, connection: HTTPConnection) -> Principal | None:
        raw = connection.cookies.get(self.session_cookie_name(connection))
        if not raw or not self.basic:
            return None
        value = self.signer.unsign(raw, self.session_max_age_s)
        if value is None:
            return None
        name, _, role = value.rpartition("|")
        # The user must still exist with the same role.
        if not any(option.role_of(name) == role for option in self.basic):
            return None
        return Principal(name, role, "session")  # type: ignore[arg-type]

    # CSRF

    def csrf_cookie_name(self, connection: HTTPConnection) -> str:
        """The name of this console's CSRF cookie."""
        return cookie_name("conveyor_csrf", connection.scope.get("root_path", ""))

    def csrf_nonce(self, connection: HTTPConnection) -> tuple[str, bool]:
        """The request's CSRF nonce, and whether it is new (and must be set as a cookie)."""
        nonce = connection.cookies.get(self.csrf_cookie_name(connection), "")
        if len(nonce) == 32 and nonce.isalnum():
            return nonce, False
        return secrets.token_hex(16), True

    def csrf_token(self, nonce: str, principal: Principal) -> str:
        """The token forms and scripts send back with a state-changing request."""
        return self.signer.sign(f"{nonce}|{principal.name}")

    def csrf_ok(self, connection: HTTPConnection, principal: Principal, token: str | None) -> bool:
        """Whether a state-changing request carries a valid CSRF token."""
        if principal.via == "token":
            return True
        nonce = connection.cookies.get(self.csrf_cookie_name(connection))
        if not token or not nonce:
            return False
        value = self.signer.unsign(token)
        return value is not None and hmac.compare_digest(value, f"{nonce}|{principal.name}")


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_MAX_AGE_S",
    "Gate",
    "Signer",
    "cookie_name",
    "cookie_path",
]
