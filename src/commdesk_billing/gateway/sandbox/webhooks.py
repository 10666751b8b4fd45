"""Webhook delivery as Cashfree does it (cashfree.md §5.1, §5.2, §5.7), plus delivery faults.

Each attempt is a POST of the same body bytes with a fresh `x-webhook-timestamp` and a signature
over timestamp + body. Only HTTP 200 counts as delivered; anything else, a timeout or a refused
connection is retried after the next wait of the schedule.

`x-idempotency-key` (derivation UNCONFIRMED, README): base64(SHA-256("<type>:<entity id>:
<status>")), the same for every attempt and duplicate of one event and different for a later
event about the same payment or refund.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from commdesk_billing.gateway.sandbox.background import Background
from commdesk_billing.gateway.signature import sign

WEBHOOK_VERSION = "2025-01-01"


class DeliveryFaults(Protocol):
    """The delivery faults a notifier reads at each event (PG's `Faults`, `PayoutFaults`)."""

    webhook_drop_rate: float
    webhook_duplicates: int
    webhook_reorder_window_ms: int
    webhook_jitter_ms: int


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    body: bytes
    idempotency_key: str
    # What the delivery log is filtered by: the order (PG) or the transfer_id (Payouts).
    subject_id: str
    entity_id: str  # cf_payment_id, cf_refund_id or cf_transfer_id


def event_key(event_type: str, entity_id: str, status: str) -> str:
    digest = hashlib.sha256(f"{event_type}:{entity_id}:{status}".encode()).digest()
    return base64.b64encode(digest).decode()


@dataclass(slots=True)
class Delivery:
    """One line of the delivery log: one attempt, or one event dropped on purpose."""

    seq: int
    event_type: str
    idempotency_key: str
    subject_id: str
    entity_id: str
    url: str
    attempt: int
    outcome: str  # delivered | failed | dropped
    status_code: int | None = None
    error: str | None = None
    at_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def as_json(self, subject: str = "order_id") -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event_type": self.event_type,
            "idempotency_key": self.idempotency_key,
            subject: self.subject_id,
            "entity_id": self.entity_id,
            "url": self.url,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "error": self.error,
            "at_ms": self.at_ms,
        }


class Notifier:
    def __init__(
        self,
        *,
        secret: str,
        default_url: str | None,
        retry_schedule_s: tuple[float, ...],
        timeout_s: float,
        faults: DeliveryFaults,
        rng: random.Random,
        background: Background,
        version: str = WEBHOOK_VERSION,
    ) -> None:
        self.secret = secret
        self.version = version
        self.default_url = default_url
        self.retry_schedule_s = retry_schedule_s
        self.timeout_s = timeout_s
        self.faults = faults
        self.rng = rng
        self.background = background
        self.log: list[Delivery] = []
        self._held: list[tuple[str, Event]] = []
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        # A fresh connection per attempt: a kept-alive socket to a receiver that restarted
        # in between would turn a good retry into a false failure.
        self._client = httpx.AsyncClient(
            timeout=self.timeout_s, limits=httpx.Limits(max_keepalive_connections=0)
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def publish(self, event: Event, notify_url: str | None) -> None:
        targets = list(dict.fromkeys(u for u in (notify_url, self.default_url) if u))
        for url in targets:
            if self.rng.random() < self.faults.webhook_drop_rate:
                self._record(event, url, 1, "dropped")
                continue
            for _ in range(self.faults.webhook_duplicates):
                if self.faults.webhook_reorder_window_ms > 0:
                    self._hold(url, event)
                else:
                    self.background.spawn(self._deliver(url, event))

    def _hold(self, url: str, event: Event) -> None:
        first = not self._held
        self._held.append((url, event))
        if first:
            self.background.later(self.faults.webhook_reorder_window_ms / 1000, self._flush)

    async def _flush(self) -> None:
        held, self._held = self._held, []
        # Newest first, each first attempt finished before the next starts, so the receiver
        # sees them in exactly reversed order; retries then run on their own.
        for url, event in reversed(held):
            if not await self._attempt(url, event, 1):
                self.background.spawn(self._retry(url, event, 2))

    async def _deliver(self, url: str, event: Event) -> None:
        if self.faults.webhook_jitter_ms > 0:
            await asyncio.sleep(self.rng.uniform(0, self.faults.webhook_jitter_ms) / 1000)
        if not await self._attempt(url, event, 1):
            await self._retry(url, event, 2)

    async def _retry(self, url: str, event: Event, attempt: int) -> None:
        for wait in self.retry_schedule_s[attempt - 2 :]:
            await asyncio.sleep(wait)
            if await self._attempt(url, event, attempt):
                return
            attempt += 1

    async def _attempt(self, url: str, event: Event, attempt: int) -> bool:
        assert self._client is not None, "Notifier.start() was not called"
        timestamp = str(int(time.time() * 1000))
        headers = {
            "content-type": "application/json",
            "x-webhook-signature": sign(self.secret, timestamp, event.body),
            "x-webhook-timestamp": timestamp,
            "x-webhook-version": self.version,
            "x-webhook-attempt": str(attempt),
            "x-idempotency-key": event.idempotency_key,
        }
        try:
            response = await self._client.post(url, content=event.body, headers=headers)
        except httpx.HTTPError as exc:
            self._record(event, url, attempt, "failed", error=type(exc).__name__)
            return False
        ok = response.status_code == 200  # Cashfree: 200 only; even a 201 or 3xx is a failure
        self._record(event, url, attempt, "delivered" if ok else "failed", response.status_code)
        return ok

    def _record(
        self,
        event: Event,
        url: str,
        attempt: int,
        outcome: str,
        status_code: int | None = None,
        error: str | None = None,
    ) -> None:
        self.log.append(
            Delivery(
                seq=len(self.log) + 1,
                event_type=event.type,
                idempotency_key=event.idempotency_key,
                subject_id=event.subject_id,
                entity_id=event.entity_id,
                url=url,
                attempt=attempt,
                outcome=outcome,
                status_code=status_code,
                error=error,
            )
        )
