"""Request hygiene before any parsing: body size, content type and JSON nesting depth."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commdesk_billing.problems import MEDIA_TYPE, problem_body
from commdesk_billing.security.jsondepth import MAX_JSON_DEPTH, JsonDepth

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


async def send_problem(
    send: Send,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A problem document answered by a middleware, before any route has run."""
    body = json.dumps(problem_body(status=status, code=code, title=title, detail=detail)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestHygiene:
    """Refuses bodies over `max_body_bytes` (by header and by counting what arrives), POST
    bodies that are not JSON, and JSON nested deeper than `max_json_depth`, so the parser
    never sees them.

    The body is read here in full (it is at most `max_body_bytes`), scanned as it arrives,
    and handed on in one piece: a refusal is a problem document of its own (413
    `payload_too_large`, 400 `json_too_deep`) sent before any route, the webhook receiver
    included, has run. No Cashfree webhook is deeper than a few levels, so refusing a deep
    one before its signature is checked costs Cashfree nothing and costs us no HMAC.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_json_depth: int = MAX_JSON_DEPTH,
        larger: Mapping[str, int] | None = None,
        forms_under: str | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        # Exact paths allowed a larger body than the rest (a batch route); nothing else.
        self.larger = dict(larger or {})
        # Where HTML forms post (the finance console): url-encoded bodies are accepted there.
        self.forms_under = forms_under

    async def _too_large(self, send: Send, limit: int) -> None:
        await send_problem(
            send,
            413,
            "payload_too_large",
            "Payload too large",
            f"bodies are limited to {limit} bytes",
        )

    def _form(self, scope: Scope, ctype: bytes) -> bool:
        return (
            self.forms_under is not None
            and ctype == b"application/x-www-form-urlencoded"
            and str(scope.get("path", "")).startswith(self.forms_under)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        limit = self.larger.get(scope.get("path", ""), self.max_body_bytes)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._too_large(send, limit)
            return
        method = scope.get("method", "").encode()
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if (
            method in _BODY_METHODS
            and (length not in (None, b"0"))
            and ctype
            and not (ctype == b"application/json" or ctype.endswith(b"+json"))
            and not self._form(scope, ctype)
        ):
            await send_problem(
                send,
                415,
                "unsupported_media_type",
                "Unsupported media type",
                "send JSON with Content-Type: application/json",
            )
            return

        depth = JsonDepth(self.max_json_depth)
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client left before its body arrived: the route sees it leave.
                await self.app(scope, _replaying([message], receive), send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await self._too_large(send, limit)
                return
            if not depth.feed(chunk):
                await send_problem(
                    send,
                    400,
                    "json_too_deep",
                    "JSON nested too deeply",
                    f"bodies may nest arrays and objects at most {self.max_json_depth} deep",
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replaying([whole], receive), send)


def _replaying(first: list[Message], receive: Receive) -> Receive:
    """A receive that hands out `first`, then whatever the client sends next (a disconnect)."""
    pending = list(first)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
