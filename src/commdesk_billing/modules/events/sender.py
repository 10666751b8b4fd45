"""One POST of one event to one endpoint, signed (`signing.py`). Nothing here touches the
database: the delivery job claims, calls `post` with no transaction open, and records the
outcome it returns.

Bounded in every way: the whole POST (resolution, connect, send, answer) has one deadline,
redirects are not followed (a 3xx could point anywhere), and the answer's body is never
read (only its status line and headers).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx

from commdesk_billing.config import Settings
from commdesk_billing.modules.events import sealing, signing, urls
from commdesk_billing.modules.events.model import Event, Outgoing


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def body_of(event: Event) -> bytes:
    """The JSON every receiver gets: the event as `GET /v1/events/{id}` shows it."""
    document = {
        "id": str(event.id),
        "type": event.event_type,
        "occurred_at": event.occurred_at.isoformat(),
        "data": event.data,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def client(settings: Settings) -> httpx.AsyncClient:
    """One round's client: a bounded pool, short timeouts, no redirects, no proxies from
    the environment (an outbound POST goes where the endpoint says, and only there)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.webhook_timeout_s, connect=min(5.0, settings.webhook_timeout_s)
        ),
        limits=httpx.Limits(
            max_connections=settings.webhook_sends_at_once,
            max_keepalive_connections=settings.webhook_sends_at_once,
        ),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "CommDesk-Billing-Webhooks/1"},
    )


async def post(settings: Settings, http: httpx.AsyncClient, out: Outgoing) -> Outcome:
    started = time.monotonic()

    def done(ok: bool, code: int | None, error: str | None) -> Outcome:
        return Outcome(ok, code, error, int((time.monotonic() - started) * 1000))

    try:
        secret = sealing.open_sealed(settings, out.secret_sealed)
    except sealing.SealingUnavailable as exc:
        return done(False, None, f"secret unavailable: {exc}")
    body = body_of(out.event)
    headers = {
        "Content-Type": "application/json",
        signing.SIGNATURE_HEADER: signing.sign(secret, int(time.time()), body),
        signing.EVENT_ID_HEADER: str(out.event.id),
        signing.EVENT_TYPE_HEADER: out.event.event_type,
        signing.DELIVERY_ID_HEADER: str(out.delivery.id),
    }
    try:
        async with asyncio.timeout(settings.webhook_timeout_s):
            # Again before each send: a name may resolve elsewhere since it was registered.
            await urls.check_resolved(settings, out.url)
            # Streamed, and closed unread: only the status is wanted, and a receiver's
            # body (however large) is never downloaded.
            async with http.stream("POST", out.url, content=body, headers=headers) as response:
                code = response.status_code
    except urls.UrlRefused as exc:
        return done(False, None, str(exc))
    except TimeoutError:
        return done(False, None, f"no answer within {settings.webhook_timeout_s:g} s")
    except httpx.HTTPError as exc:
        return done(False, None, f"unreachable: {type(exc).__name__}")
    if 200 <= code < 300:
        return done(True, code, None)
    return done(False, code, f"answered {code}")
