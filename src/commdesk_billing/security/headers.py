"""Security headers on every answer: routes, problems, 404s and the middlewares' refusals.

The API answers JSON to programs, so its policy is the strictest there is: nothing may be
loaded, framed, sniffed, referred or cached. The API documentation pages (`apidocs.py`) are
one kind of HTML we serve; they get a policy of their own that lets their scripts and
styles load from us (the UIs' bundles are served by `apidocs.py`, never from a CDN), and
nothing else. The finance console
(`/console`) is the other: its own stylesheet, its own forms, nothing inline.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commdesk_billing.config import Environment, Settings

# Everything we answer is data: no script, style, frame, form or base may come with it.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

# The documentation pages load Swagger UI and ReDoc from us (`apidocs.py` serves their
# bundles): no other host, so the pages work offline and leak nothing to a CDN. ReDoc starts
# a web worker from a blob. Styles may be inline (ReDoc's page has a <style> block; both UIs
# set styles at run time); scripts may not: the Swagger UI page starts itself from a script
# file of ours.
DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "connect-src 'self'; "
    "worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/swagger-init.js", "/redoc"})
DOCS_ASSETS_PREFIX = "/docs/assets/"

# The finance console (`console/`): server-rendered pages with one stylesheet of our own.
# No script at all, no inline style (`style-src 'self'` only), forms post only to us, and
# images only our own or inline SVG data (charts drawn on the server).
CONSOLE_CSP = (
    "default-src 'none'; "
    "style-src 'self'; "
    "img-src 'self' data:; "
    "form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
CONSOLE_PREFIX = "/console"

_ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    # Only no-cors loads (an <img>, a <script>) of another site are refused: CORS reads,
    # which the CORS settings allow, are not affected.
    (b"cross-origin-resource-policy", b"same-origin"),
)


# The console's forms post to us, and a browser sends `Origin: null` on a form post from a
# page whose policy is `no-referrer`: the CSRF guard (and the sign-in) could not tell our
# own page from another site's. `same-origin` sends the origin to us and nothing elsewhere.
_CONSOLE_ALWAYS = tuple(
    (name, b"same-origin" if name == b"referrer-policy" else value) for name, value in _ALWAYS
)


def base_headers(settings: Settings, path: str) -> list[tuple[bytes, bytes]]:
    """The headers every answer to `path` carries (Cache-Control aside: see `SecurityHeaders`)."""
    console = path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
    if path in DOCS_PATHS or path.startswith(DOCS_ASSETS_PREFIX):
        csp = DOCS_CSP
    elif console:
        csp = CONSOLE_CSP
    else:
        csp = API_CSP
    always = _CONSOLE_ALWAYS if console else _ALWAYS
    headers = [*always, (b"content-security-policy", csp.encode())]
    if settings.env is Environment.production and settings.hsts_max_age_s > 0:
        # Production is served over HTTPS only (Traefik terminates TLS); a browser that has
        # seen this never tries plain HTTP again, so a network attacker cannot strip TLS.
        hsts = f"max-age={settings.hsts_max_age_s}; includeSubDomains"
        headers.append((b"strict-transport-security", hsts.encode()))
    return headers


def merged(
    own: Iterable[tuple[bytes, bytes]], ours: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The route's headers with ours in place of any of the same name; `no-store` unless the
    route chose its own Cache-Control (an invoice PDF may be cached privately)."""
    names = {name for name, _ in ours}
    kept = [(n, v) for n, v in own if n.lower() not in names]
    if not any(n.lower() == b"cache-control" for n, _ in kept):
        kept.append((b"cache-control", b"no-store"))
    return kept + ours


class SecurityHeaders:
    """Adds `base_headers` to every HTTP answer that passes through it. Installed outside
    every middleware that can refuse a request, so refusals carry them too; the 500 answer,
    made outside all middlewares, adds them itself (`problems.py`)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ours = base_headers(self.settings, scope.get("path", ""))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = merged(message.get("headers") or [], ours)
            await send(message)

        await self.app(scope, receive, with_headers)
