"""CORS: closed unless BILLING_CORS_ORIGINS names the origin.

A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, before
routing: 204 with the grant for an allowed origin, method and headers; otherwise a 403
problem `cors_refused` that says which part was refused (not a 405 from a router that has no
OPTIONS routes). Other requests pass through; an allowed origin's answers carry
`Access-Control-Allow-Origin` (never `*`), and every answer to a request with an Origin
says `Vary: Origin` so no cache hands one origin's grant to another.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commdesk_billing.security.hygiene import send_problem

CODE = "cors_refused"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# What our routes read, and the safelisted ones a browser may still list.
HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "content-language",
        "content-type",
        "authorization",
        "idempotency-key",
        "traceparent",
        "x-csrf-token",
        "x-device-id",
        "x-request-id",
    }
)
EXPOSED = b"x-request-id, retry-after, ratelimit, ratelimit-policy, location, content-disposition"


class Cors:
    def __init__(
        self,
        app: ASGIApp,
        origins: tuple[str, ...],
        *,
        allow_credentials: bool = False,
        max_age_s: int = 600,
    ) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.allow_credentials = allow_credentials
        self.max_age_s = max_age_s

    def _grant(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        headers = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = origin.decode("latin-1") in self.origins
        requested = headers.get(b"access-control-request-method")
        if scope.get("method") == "OPTIONS" and requested is not None:
            await self._preflight(send, origin, allowed, requested, headers)
            return

        async def with_grant(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = [
                    (n, v)
                    for n, v in message.get("headers") or []
                    if not n.lower().startswith(b"access-control-")
                ]
                if allowed:
                    extra = [*self._grant(origin), (b"access-control-expose-headers", EXPOSED)]
                else:
                    extra = [(b"vary", b"Origin")]
                message["headers"] = own + extra
            await send(message)

        await self.app(scope, receive, with_grant)

    async def _preflight(
        self,
        send: Send,
        origin: bytes,
        allowed: bool,
        requested: bytes,
        headers: dict[bytes, bytes],
    ) -> None:
        asked = {
            h.strip().lower()
            for h in headers.get(b"access-control-request-headers", b"")
            .decode("latin-1")
            .split(",")
            if h.strip()
        }
        vary = [(b"vary", b"Origin")]
        if not allowed:
            detail = "cross-origin requests are not allowed from this origin"
        elif requested.decode("latin-1") not in METHODS:
            detail = f"cross-origin requests may use {', '.join(METHODS)}"
        elif not asked <= HEADERS:
            detail = (
                f"cross-origin requests may send only these headers: {', '.join(sorted(HEADERS))}"
            )
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *self._grant(origin),
                        (b"access-control-allow-methods", ", ".join(METHODS).encode()),
                        (b"access-control-allow-headers", ", ".join(sorted(HEADERS)).encode()),
                        (b"access-control-max-age", str(self.max_age_s).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await send_problem(send, 403, CODE, "Cross-origin request refused", detail, vary)
