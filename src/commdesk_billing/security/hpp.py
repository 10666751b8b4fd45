"""HTTP parameter pollution: a parameter we read once must be sent once.

`?limit=10&limit=1000` or two `Authorization` lines leave it to whichever layer reads first
which value counts (a proxy or a WAF may check one, we would act on the other). No route of
ours takes a list in the query string, and the headers below each carry one value, so a
second copy is refused (400 `duplicate_parameter`) before any route runs.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from commdesk_billing.security.hygiene import send_problem

CODE = "duplicate_parameter"

# Headers defined (or used by us) as one value each; list-valued ones (Accept,
# X-Forwarded-For, Forwarded, Via…) may repeat as HTTP allows.
SINGLE_HEADERS = frozenset(
    {
        b"authorization",
        b"cookie",
        b"content-type",
        b"content-length",
        b"host",
        b"idempotency-key",
        b"origin",
        b"referer",
        b"traceparent",
        b"x-csrf-token",
        b"x-device-id",
        b"x-request-id",
        b"access-control-request-method",
        # Cashfree's webhook headers: the signature is checked over one timestamp.
        b"x-webhook-signature",
        b"x-webhook-timestamp",
        b"x-webhook-version",
        b"x-idempotency-key",
    }
)


def repeated_header(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first header of `SINGLE_HEADERS` sent more than once (names are lower case in
    ASGI), or None."""
    seen: set[bytes] = set()
    for name, _ in headers:
        if name in SINGLE_HEADERS:
            if name in seen:
                return name.decode("latin-1")
            seen.add(name)
    return None


def repeated_query(query_string: bytes) -> bool:
    """Whether a query parameter name occurs twice, decoded as the router decodes it
    (`%6Cimit` is `limit`)."""
    if not query_string:
        return False
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return any(n > 1 for n in Counter(name for name, _ in pairs).values())


class DuplicateParameters:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = repeated_header(list(scope.get("headers") or []))
        if header is not None:
            # The name is ours (SINGLE_HEADERS), never the client's text.
            detail = f"the {header} header may be sent once"
        elif repeated_query(scope.get("query_string", b"")):
            detail = "each query parameter may be sent once"
        else:
            await self.app(scope, receive, send)
            return
        await send_problem(send, 400, CODE, "Duplicate parameter", detail)
