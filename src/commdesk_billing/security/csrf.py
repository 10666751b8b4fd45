"""CSRF protection for cookie-authenticated requests (the finance console's session).

A browser attaches cookies to requests any site makes, so a request that carries the
console's session cookie and changes something (POST, PUT, PATCH, DELETE) is accepted only
when it shows it came from our own page:

- its `Origin` (or, without one, its `Referer`) is an allowed origin: BILLING_CORS_ORIGINS
  or our own (BILLING_PUBLIC_BASE_URL);
- it sends `X-CSRF-Token` equal to the console's CSRF cookie (double submit: another site
  can neither read that cookie nor set the header), and the token is an HMAC, under
  BILLING_CSRF_SECRET, of a nonce and this session's value — so a token planted through
  a sibling subdomain's cookie, or taken from another session, does not pass.

Without BILLING_CSRF_SECRET every such request is refused. Requests without the session
cookie (bearer tokens: programs, the member app) are not looked at: a browser never adds an
Authorization header on its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from commdesk_billing.config import Settings
from commdesk_billing.security.hygiene import send_problem

CODE = "csrf_failed"
HEADER = b"x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CONTEXT = b"commdesk-billing csrf v1\x00"
_NONCE_BYTES = 16


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, nonce: bytes, session: str) -> bytes:
    # Length-prefixed session: no two (nonce, session) pairs hash the same bytes.
    message = _CONTEXT + nonce + len(session).to_bytes(4, "big") + session.encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def csrf_token(secret: str, session: str) -> str:
    """A new token for `session` (set as the CSRF cookie at sign-in, readable by the page)."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return f"{_b64(nonce)}.{_b64(_mac(secret, nonce, session))}"


def token_valid(secret: str, session: str, token: str) -> bool:
    nonce_text, _, mac_text = token.partition(".")
    try:
        nonce, mac = _unb64(nonce_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        return False
    if len(nonce) != _NONCE_BYTES:
        return False
    return hmac.compare_digest(mac, _mac(secret, nonce, session))


def _same(a: str, b: str) -> bool:
    # compare_digest takes str only when ASCII; header text may be any latin-1.
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


class CsrfGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.cookie = settings.console_session_cookie
        self.csrf_cookie = settings.console_csrf_cookie
        self.secret = settings.csrf_secret.get_secret_value() if settings.csrf_secret else None
        own = origin_of(settings.public_base_url)
        self.origins = frozenset({*settings.cors_origins, *([own] if own else [])})

    def refusal(self, headers: dict[bytes, bytes]) -> str | None:
        """Why a request carrying the session cookie is refused, or None."""
        cookies = cookie_parser(headers.get(b"cookie", b"").decode("latin-1"))
        session = cookies.get(self.cookie)
        if not session:
            return None
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not origin:
            origin = origin_of(headers.get(b"referer", b"").decode("latin-1")) or ""
        if origin not in self.origins:
            return "requests with a console session must come from an allowed origin"
        token = headers.get(HEADER, b"").decode("latin-1")
        if (
            self.secret is None
            or not token
            or not _same(token, cookies.get(self.csrf_cookie, ""))
            or not token_valid(self.secret, session, token)
        ):
            return "requests with a console session need a valid X-CSRF-Token header"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        reason = self.refusal(dict(scope.get("headers") or []))
        if reason is None:
            await self.app(scope, receive, send)
            return
        await send_problem(send, 403, CODE, "CSRF check failed", reason)
