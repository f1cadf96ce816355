"""Who may look and who may act: HTTP Basic auth, the CSRF token, and which addresses need a password.

- **Auth** is HTTP Basic, checked before anything else (``/healthz`` excepted, for
  probes), with a constant-time comparison.
- **CSRF**: every action is a POST carrying the app's token, in the form field
  ``csrf_token`` or the ``X-CSRF-Token`` header. The token is an HMAC of the app's secret,
  so another site's page, which cannot read ours, cannot forge a request the browser
  would send with our credentials. Apps that share a secret (``JOBKIT_WEB_SECRET``, or
  ``create_app(secret=...)``) accept each other's tokens: several processes behind one
  address.
- **Addresses**: a dashboard steers the queue, so it listens on loopback unless it asks for
  a password (:func:`check_bind`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobkit.errors import ValidationError

AUTH_ENV = "JOBKIT_WEB_AUTH"  # USER:PASSWORD when --auth is not given
SECRET_ENV = "JOBKIT_WEB_SECRET"  # the CSRF secret shared by several dashboard processes
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
OPEN_PATHS = frozenset({"/healthz"})  # answered without credentials


def parse_auth(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` as a pair; both parts must be there."""
    user, separator, password = text.partition(":")
    if not separator or not user or not password:
        raise ValidationError("auth must be USER:PASSWORD, with both parts", value="<hidden>")
    return user, password


def check_bind(host: str, auth: tuple[str, str] | None) -> None:
    """Refuse to listen beyond loopback without a password: anyone who reaches it could purge the queue."""
    if host not in LOOPBACK and auth is None:
        raise ValidationError(
            f"--host {host} would let anyone who reaches it act on the queue: give --auth USER:PASSWORD "
            f"(or ${AUTH_ENV}), or listen on 127.0.0.1",
            value=host,
        )


def csrf_token(secret: bytes) -> str:
    """The token every form of an app carries."""
    return hmac.new(secret, b"jobkit-web-csrf", hashlib.sha256).hexdigest()


def new_secret(given: str | None) -> bytes:
    return given.encode() if given else secrets.token_bytes(32)


def token_matches(secret: bytes, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(offered.encode(), csrf_token(secret).encode())


class BasicAuth:
    """ASGI middleware: every request but :data:`OPEN_PATHS` needs the user and password."""

    def __init__(self, app: ASGIApp, user: str, password: str, *, base_path: str = "", realm: str = "jobkit") -> None:
        self.app = app
        self.expected = f"{user}:{password}".encode()
        self.open_paths = {f"{base_path}{path}" for path in OPEN_PATHS}  # the app's own base path in front
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._path(scope) in self.open_paths or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", f'Basic realm="{self.realm}"'.encode()),
                    (b"content-type", b"text/plain; charset=utf-8"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"credentials needed\n"})

    @staticmethod
    def _path(scope: Scope) -> str:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        return path[len(root) :] if root and path.startswith(root) else path

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:6].lower() == b"basic ":
                try:
                    offered = base64.b64decode(value[6:].strip(), validate=True)
                except (binascii.Error, ValueError):
                    return False
                return hmac.compare_digest(offered, self.expected)
        return False


HEADERS = (
    (b"x-frame-options", b"DENY"),  # no other site may frame a page with a Purge button on it
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class SecurityHeaders:
    """ASGI middleware: every response of the dashboard refuses to be framed and to be sniffed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)
