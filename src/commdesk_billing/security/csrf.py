"""CSRF protection for cookie-authenticated requests (the finance console's session).

A browser attaches cookies to requests any site makes, so a request that carries the
console's session cookie and changes something (POST, PUT, PATCH, DELETE) is accepted only
when it shows it came from our own page:

- its `Origin` (or, without one, its `Referer`) is an allowed origin: BILLING_CORS_ORIGINS
  or our own (BILLING_PUBLIC_BASE_URL);
- it sends `X-CSRF-Token` — or, for the console's HTML forms, which cannot set a header, a
  `csrf_token` field of its `application/x-www-form-urlencoded` body — equal to the
  console's CSRF cookie (double submit: another site can neither read that cookie nor
  set the header or the field to it), and the token is an HMAC, under
  BILLING_CSRF_SECRET, of a nonce and this session's value — so a token planted through
  a sibling subdomain's cookie, or taken from another session, does not pass.

Without BILLING_CSRF_SECRET every such request is refused. Requests without the session
cookie (bearer tokens: programs, the member app) are not looked at: a browser never adds an
Authorization header on its own.

The cookies' names: `__Host-` + the configured names, Secure, wherever the console is served
over HTTPS (`console_cookies`); plain names, not Secure, only for a development API on a
plain-HTTP loopback address (a browser keeps no Secure or `__Host-` cookie from there).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commdesk_billing.config import Environment, Settings
from commdesk_billing.security.hygiene import _replaying, send_problem

CODE = "csrf_failed"
HEADER = b"x-csrf-token"
FORM_FIELD = "csrf_token"
_FORM = b"application/x-www-form-urlencoded"
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


@dataclass(frozen=True)
class ConsoleCookies:
    session: str
    csrf: str
    secure: bool


def _loopback_http(settings: Settings) -> bool:
    parts = urlsplit(settings.public_base_url)
    if parts.scheme != "http" or settings.env is Environment.production:
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_cookies(settings: Settings) -> ConsoleCookies:
    """The console's cookie names and whether they are Secure (one rule for the console,
    which sets them, and the guard, which reads them)."""
    if _loopback_http(settings):
        return ConsoleCookies(settings.console_session_cookie, settings.console_csrf_cookie, False)
    return ConsoleCookies(
        f"__Host-{settings.console_session_cookie}",
        f"__Host-{settings.console_csrf_cookie}",
        True,
    )


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


class CsrfGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        names = console_cookies(settings)
        self.cookie = names.session
        self.csrf_cookie = names.csrf
        # A form's body is read here, before the body hygiene, so it is capped here too.
        self.max_form_bytes = settings.max_body_bytes
        self.secret = settings.csrf_secret.get_secret_value() if settings.csrf_secret else None
        own = origin_of(settings.public_base_url)
        self.origins = frozenset({*settings.cors_origins, *([own] if own else [])})

    def refusal(self, headers: dict[bytes, bytes], form_token: str | None = None) -> str | None:
        """Why a request carrying the session cookie is refused, or None. `form_token`: the
        `csrf_token` field of a form's body, used when no header was sent."""
        cookies = cookie_parser(headers.get(b"cookie", b"").decode("latin-1"))
        session = cookies.get(self.cookie)
        if not session:
            return None
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not origin:
            origin = origin_of(headers.get(b"referer", b"").decode("latin-1")) or ""
        if origin not in self.origins:
            return "requests with a console session must come from an allowed origin"
        token = headers.get(HEADER, b"").decode("latin-1") or form_token or ""
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
        headers = dict(scope.get("headers") or [])
        if not self._wants_form(headers):
            reason = self.refusal(headers)
            if reason is None:
                await self.app(scope, receive, send)
                return
            await send_problem(send, 403, CODE, "CSRF check failed", reason)
            return
        body = await self._form_body(receive)
        reason = self.refusal(headers, None if body is None else _field(body))
        if reason is None and body is not None:
            whole: Message = {"type": "http.request", "body": body, "more_body": False}
            await self.app(scope, _replaying([whole], receive), send)
            return
        await send_problem(send, 403, CODE, "CSRF check failed", reason or "form too large")

    def _wants_form(self, headers: dict[bytes, bytes]) -> bool:
        """A form post with the session cookie and no header: its body holds the token."""
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != _FORM or headers.get(HEADER):
            return False
        cookies = cookie_parser(headers.get(b"cookie", b"").decode("latin-1"))
        return bool(cookies.get(self.cookie))

    async def _form_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None past `max_form_bytes` (or a client that left)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_form_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _field(body: bytes) -> str | None:
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return None
    values = fields.get(FORM_FIELD, [])
    return values[0] if len(values) == 1 else None
