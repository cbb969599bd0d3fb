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

Local mode (no credentials, bound to loopback) never trusts a request that came through a
proxy: one carrying ``Forwarded``, any ``X-Forwarded-*``, ``X-Real-IP`` or ``Via`` header, an
HTTP/1.0 request (nginx's default ``proxy_pass``), or any request at all when the console is
told it sits behind a proxy (``behind_proxy``). A proxy that speaks HTTP/1.1 and adds none of
those headers is indistinguishable from a local browser, which is why a console behind a
proxy must have credentials (the docs say so).

Failed sign-ins are throttled per client address and per user name
(:class:`SignInThrottle`); every response carries headers that forbid framing and limit
scripts, styles and connections to the console's own origin (:class:`SecurityHeaders`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
#: Request headers that only a proxy adds (besides every ``X-Forwarded-*`` header).
PROXY_HEADERS = frozenset({"forwarded", "x-real-ip", "via"})
#: Headers on every response of the console: no framing by other sites, scripts, styles and
#: connections from the console's own origin only (it has no inline script or style).
RESPONSE_HEADERS = (
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
)


def proxied(connection: HTTPConnection) -> bool:
    """Whether the request looks proxied: it carries a header that a reverse proxy adds, or
    it is HTTP/1.0, which browsers no longer speak but nginx's ``proxy_pass`` does by
    default (with no header added)."""
    if connection.scope.get("http_version") == "1.0":
        return True
    return any(
        name in PROXY_HEADERS or name.startswith("x-forwarded-") for name in connection.headers
    )


class SecurityHeaders:
    """ASGI middleware adding :data:`RESPONSE_HEADERS` to every HTTP response that does not
    set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(name.encode(), value.encode()) for name, value in RESPONSE_HEADERS]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in self.headers if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SignInThrottled(Exception):
    """Too many failed sign-ins for a user or from a client; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, int(retry_after_s + 0.999))
        super().__init__(
            "too many failed sign-ins for this user or from this address; "
            f"try again in {self.retry_after_s} s"
        )


class SignInThrottle:
    """Failed sign-ins counted in a sliding window, per client address and per user name.

    After ``per_user`` failures for one user name, or ``per_client`` from one address,
    within ``window_s`` seconds, every sign-in for that user or from that address is refused
    (even with the right password) until the oldest failure leaves the window. Locking a user
    name is the price of stopping a password guesser who changes addresses; the lock ends by
    itself. At most ``max_keys`` names and addresses are remembered (the oldest go first).
    """

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_client: int = 20,
        window_s: float = 300.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"user": per_user, "client": per_client}
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _keys(self, client: str | None, user: str) -> list[tuple[str, str]]:
        keys = [("user", user)] if user else []
        return keys + ([("client", client)] if client else [])

    def check(self, client: str | None, user: str) -> None:
        """Raise :class:`SignInThrottled` when this sign-in must wait."""
        now = self.clock()
        wait = 0.0
        for key in self._keys(client, user):
            failures = self._failures.get(key)
            if not failures:
                continue
            while failures and failures[0] <= now - self.window_s:
                failures.popleft()
            if len(failures) >= self.limits[key[0]]:
                wait = max(wait, failures[0] + self.window_s - now)
        if wait > 0:
            raise SignInThrottled(wait)

    def failed(self, client: str | None, user: str) -> None:
        """Count a failed sign-in."""
        now = self.clock()
        for key in self._keys(client, user):
            self._failures.setdefault(key, deque(maxlen=max(self.limits.values()))).append(now)
            self._failures[key] = self._failures.pop(key)  # most recent last
        while len(self._failures) > self.max_keys:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, client: str | None, user: str) -> None:
        """Forget the user's failures after a successful sign-in (the address's stay)."""
        self._failures.pop(("user", user), None)


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
        behind_proxy: The console is reached through a reverse proxy: local mode (no
            credentials) lets nobody in, whatever the request looks like.
        throttle: Counts failed sign-ins (the form's and ``Authorization: Basic``).
    """

    def __init__(
        self,
        options: list[AuthOption],
        *,
        public: bool,
        secret_key: str | None = None,
        session_max_age_s: float = SESSION_MAX_AGE_S,
        login_url: str | None = None,
        behind_proxy: bool = False,
        throttle: SignInThrottle | None = None,
    ) -> None:
        self.basic = [o for o in options if isinstance(o, BasicAuth)]
        self.tokens = [o for o in options if isinstance(o, TokenAuth)]
        self.hosts = [o for o in options if not isinstance(o, BasicAuth | TokenAuth)]
        self.public = public
        self.session_max_age_s = session_max_age_s
        self.login_url = login_url
        self.behind_proxy = behind_proxy
        self.throttle = throttle or SignInThrottle()
        self.signer = Signer(derive_secret(options, secret_key))

    @property
    def configured(self) -> bool:
        """Whether any authentication is configured (else: local use only)."""
        return bool(self.basic or self.tokens or self.hosts)

    #: Why a console without credentials refused a request, and how to give it some.
    SETUP_HINT = (
        "This console has no credentials, so it serves only a browser on its own machine "
        "that reaches it directly (not through a proxy). To use it from anywhere else, set "
        "CONVEYOR_AUTH_PASSWORD (and CONVEYOR_AUTH_USER, 'admin' by default; "
        "CONVEYOR_AUTH_TOKEN for API clients) and restart it, or pass auth= to create_app."
    )

    @property
    def has_login_form(self) -> bool:
        """Whether the console's own sign-in form can sign anyone in."""
        return bool(self.basic)

    def local_allowed(self, connection: HTTPConnection) -> bool:
        """Local use: no authentication, not public, and the client is this machine.

        The ``Host`` header must name this machine too, so that a web page whose domain
        was rebound to 127.0.0.1 (DNS rebinding) cannot read or drive the console; and the
        request must not have come through a proxy (see the module's docstring).
        """
        client = connection.client
        host = connection.url.hostname or ""
        return (
            not self.configured
            and not self.public
            and not self.behind_proxy
            and not proxied(connection)
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
            return self._check_basic(credentials.strip(), connection)
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

    def _check_basic(self, credentials: str, connection: HTTPConnection) -> Principal | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        return self.check_password(name, password, connection) if sep else None

    def check_password(
        self, name: str, password: str, connection: HTTPConnection | None = None
    ) -> Principal | None:
        """The principal for a user name and password (the sign-in form), or None.

        Raises:
            SignInThrottled: Too many recent failures for this user or from this client
                (counted when ``connection`` is given).
        """
        client = connection.client.host if connection and connection.client else None
        if connection is not None:
            self.throttle.check(client, name)
        for option in self.basic:
            found = option.check(name, password)
            if found is not None:
                if connection is not None:
                    self.throttle.succeeded(client, name)
                return found
        if connection is not None:
            self.throttle.failed(client, name)
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
    "PROXY_HEADERS",
    "RESPONSE_HEADERS",
    "SESSION_MAX_AGE_S",
    "Gate",
    "SecurityHeaders",
    "SignInThrottle",
    "SignInThrottled",
    "Signer",
    "cookie_name",
    "cookie_path",
    "proxied",
]
