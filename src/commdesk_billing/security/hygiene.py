"""Request hygiene before any parsing: body size and content type."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commdesk_billing.problems import MEDIA_TYPE, problem_body

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


async def _send_problem(send: Send, status: int, code: str, title: str, detail: str) -> None:
    body = json.dumps(problem_body(status=status, code=code, title=title, detail=detail)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestHygiene:
    """Refuses bodies over `max_body_bytes` (by header and by counting what arrives) and
    POST bodies that are not JSON, so the parser never sees them."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _send_problem(
                send,
                413,
                "payload_too_large",
                "Payload too large",
                f"bodies are limited to {self.max_body_bytes} bytes",
            )
            return
        method = scope.get("method", "").encode()
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if (
            method in _BODY_METHODS
            and (length not in (None, b"0"))
            and ctype
            and not (ctype == b"application/json" or ctype.endswith(b"+json"))
        ):
            await _send_problem(
                send,
                415,
                "unsupported_media_type",
                "Unsupported media type",
                "send JSON with Content-Type: application/json",
            )
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # An HTTPException passes through FastAPI's body reading unchanged
                    # (anything else would be turned into a 400 there).
                    raise HTTPException(413, f"bodies are limited to {self.max_body_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)
