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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from commdesk_billing.config import Environment, Settings
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


class _PublicOnly(httpcore.AsyncNetworkBackend):
    """Production's network backend: each connection goes to the address `urls` resolved
    and found public at that moment, never to a second resolution of the name (which a
    rebinding DNS server could point at our network). TLS still names the host (SNI and
    certificate checks use the URL's host, not the address)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await urls.public_address(host, port)
        return await self._inner.connect_tcp(
            address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise urls.UrlRefused("the URL must be https://host/path")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def client(settings: Settings) -> httpx.AsyncClient:
    """One round's client: a bounded pool, short timeouts, no redirects, no proxies from
    the environment (an outbound POST goes where the endpoint says, and only there); in
    production, connections only to addresses checked public as they are made."""
    limits = httpx.Limits(
        max_connections=settings.webhook_sends_at_once,
        max_keepalive_connections=settings.webhook_sends_at_once,
    )
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    if settings.env is Environment.production:
        # httpx offers no option for the backend its pool connects with: set on the pool.
        pool = transport._pool
        pool._network_backend = _PublicOnly(pool._network_backend)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.webhook_timeout_s, connect=min(5.0, settings.webhook_timeout_s)
        ),
        transport=transport,
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
