"""Receiving Cashfree webhooks (DESIGN §5): verify, store raw, dedupe, hand over, answer.

Nothing here grants credits or trusts the payload's claims: a verified webhook only causes
`payment.processing`, which asks Cashfree's API for the truth. What the receiver does:

1. the signature over the exact bytes, with every configured secret (rotation), compared in
   constant time; a forged or altered body is refused with 401 and not stored;
2. the signature timestamp within a window wide enough for Cashfree's own retries;
3. store the raw body and headers once per delivery identity (Cashfree's x-idempotency-key,
   else payment id + type): a repeat only bumps a counter;
4. checks against our order or refund (unknown: recorded and answered; amount or currency
   that disagree with ours: a fraud event, and not acted on);
5. in the same transaction, `payment.processing` (or `refund.processing`) into the outbox.
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.db.sql import sql
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.amounts import AmountError
from commdesk_billing.gateway.models import PaymentWebhookData, WebhookEnvelope
from commdesk_billing.gateway.models import Refund as GatewayRefund
from commdesk_billing.modules.fraud import service as fraud
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.refunds import reads as refunds
from commdesk_billing.queues import outbox
from commdesk_billing.telemetry.metrics import WEBHOOKS_RECEIVED

log = structlog.get_logger(__name__)

PAYMENT_EVENTS = frozenset(
    {"PAYMENT_SUCCESS_WEBHOOK", "PAYMENT_FAILED_WEBHOOK", "PAYMENT_USER_DROPPED_WEBHOOK"}
)
REFUND_EVENTS = frozenset({"REFUND_STATUS_WEBHOOK"})
# Headers worth keeping as evidence (never Authorization-like ones: Cashfree sends none).
_KEPT_HEADERS = (
    "content-type",
    "x-webhook-signature",
    "x-webhook-timestamp",
    "x-webhook-version",
    "x-webhook-attempt",
    "x-idempotency-key",
    "user-agent",
)


class WebhookRefused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Receipt:
    webhook_id: uuid.UUID | None
    outcome: str  # accepted | duplicate | unknown_order | mismatch | ignored


def _secrets(settings: Settings) -> list[str]:
    return [settings.cashfree_client_secret.get_secret_value()] + [
        s.get_secret_value() for s in settings.cashfree_previous_secrets
    ]


def authenticate(settings: Settings, body: bytes, headers: dict[str, str]) -> str:
    """Check signature and timestamp; return the timestamp header. Raises WebhookRefused."""
    sig = headers.get("x-webhook-signature")
    ts = headers.get("x-webhook-timestamp")
    if not sig or not ts:
        raise WebhookRefused(401, "webhook_unsigned", "x-webhook-signature and timestamp needed")
    if not (ts.isascii() and ts.isdigit()) or len(ts) > 16:
        raise WebhookRefused(
            401, "webhook_timestamp_invalid", "x-webhook-timestamp is not epoch ms"
        )
    if len(sig) > 200 or not signature.verify(_secrets(settings), ts, body, sig):
        raise WebhookRefused(401, "webhook_signature_invalid", "signature does not match")
    age_s = time.time() - int(ts) / 1000
    if age_s > settings.webhook_max_age_s or -age_s > settings.webhook_max_future_s:
        raise WebhookRefused(401, "webhook_stale", "signature timestamp outside the window")
    return ts


def _dedupe_key(event: WebhookEnvelope, data: PaymentWebhookData | None) -> str:
    """One delivery identity per event, built from the signed body only. Cashfree's
    x-idempotency-key header is not covered by the signature, so someone replaying a captured
    delivery with fresh header values must not make it new; the header is kept as evidence."""
    if data is not None:
        return (
            f"{event.type}:{data.order.order_id}:{data.payment.cf_payment_id}:"
            f"{data.payment.payment_status}"
        )
    payload = event.data
    refund = payload.get("refund") if isinstance(payload.get("refund"), dict) else None
    if refund and refund.get("refund_id") is not None:
        return (
            f"{event.type}:{refund.get('order_id')}:{refund.get('refund_id')}:"
            f"{refund.get('refund_status')}"
        )
    digest = uuid.uuid5(uuid.NAMESPACE_OID, json.dumps(payload, sort_keys=True, default=str))
    return f"{event.type}:body:{digest}"


async def receive(
    engine: AsyncEngine, settings: Settings, body: bytes, headers: dict[str, str], peer: str | None
) -> Receipt:
    ts = authenticate(settings, body, headers)
    try:
        parsed = json.loads(body, parse_float=Decimal)
        event = WebhookEnvelope.model_validate(parsed)
    except (ValueError, ValidationError) as exc:
        WEBHOOKS_RECEIVED.labels("malformed").inc()
        raise WebhookRefused(
            400, "webhook_malformed", "signed body is not a Cashfree event"
        ) from exc
    kept = {h: headers[h][:500] for h in _KEPT_HEADERS if h in headers}
    attempt = headers.get("x-webhook-attempt", "")
    data: PaymentWebhookData | None = None
    unreadable: str | None = None
    refund_data: GatewayRefund | None = None
    if event.type in PAYMENT_EVENTS:
        try:
            data = PaymentWebhookData.model_validate(event.data)
        except (ValidationError, AmountError) as exc:
            unreadable = f"payload unreadable: {str(exc)[:300]}"
    elif event.type in REFUND_EVENTS:
        try:
            refund_data = GatewayRefund.model_validate(event.data.get("refund"))
        except (ValidationError, AmountError) as exc:
            unreadable = f"payload unreadable: {str(exc)[:300]}"
    key = _dedupe_key(event, data)[:500]
    stored = {
        "key": key,
        "pk": (headers.get("x-idempotency-key") or "")[:200] or None,
        "type": event.type[:100],
        "raw": body,
        "headers": json.dumps(kept),
        "ts": ts,
        "att": int(attempt)
        if attempt.isascii() and attempt.isdigit() and len(attempt) < 6
        else None,
        "ip": peer,
        "order": data.order.order_id[:100] if data else None,
        "cf": data.payment.cf_payment_id[:100] if data else None,
    }

    async def work(conn: AsyncConnection) -> Receipt:
        if event.type in REFUND_EVENTS:
            return await _receive_refund(conn, stored, refund_data, unreadable)
        payment = await payments.by_order_id(conn, data.order.order_id) if data else None
        verdict: tuple[str, str] | None = None  # (status, outcome) when not acted on
        mismatch: list[str] = []
        if event.type not in PAYMENT_EVENTS:
            # Kept as evidence (settlements, disputes…): nothing here acts on them yet.
            verdict = ("ignored", f"no handler for {event.type}")
        elif data is None:
            verdict = ("rejected", unreadable or "payload unreadable")
        elif payment is None:
            verdict = ("ignored", "unknown order")
        else:
            mismatch = _disagreements(data, payment)
            if mismatch:
                verdict = ("rejected", f"disagrees with the order: {mismatch}")
        webhook_id, inserted = await _store(conn, stored, payment.id if payment else None, verdict)
        if not inserted:
            return Receipt(webhook_id, "duplicate")
        if payment is None or data is None:
            if data is not None:
                log.warning("webhook.unknown_order", order_id=data.order.order_id[:100])
                return Receipt(webhook_id, "unknown_order")
            return Receipt(webhook_id, "ignored")
        if mismatch:
            await fraud.record(
                conn,
                "webhook_amount_mismatch",
                severity="high",
                payment_id=payment.id,
                user_id=payment.user_id,
                webhook_id=webhook_id,
                details={"fields": mismatch, "expected_paise": payment.amount_paise},
            )
            return Receipt(webhook_id, "mismatch")
        await outbox.send(
            conn,
            "payment.processing",
            "payment.webhook",
            {
                "payment_id": str(payment.id),
                "order_id": payment.order_id,
                "order_expires_at": payment.order_expires_at.isoformat(),
                "source": "webhook",
                "webhook_id": str(webhook_id),
            },
            correlation_id=str(payment.id),
        )
        return Receipt(webhook_id, "accepted")

    receipt = await in_transaction(engine, work)
    WEBHOOKS_RECEIVED.labels(receipt.outcome).inc()
    return receipt


async def _store(
    conn: AsyncConnection,
    stored: dict[str, Any],
    payment_id: uuid.UUID | None,
    verdict: tuple[str, str] | None,
) -> tuple[uuid.UUID, bool]:
    """Insert the delivery once per dedupe key; a repeat bumps the counter. Returns the
    row's id and whether this call inserted it."""
    row = (
        await conn.execute(
            sql("""
            INSERT INTO payment_webhooks (id, dedupe_key, provider_key, event_type,
                raw_body, headers, signature_timestamp, delivery_attempt, source_ip,
                order_id, cf_payment_id, payment_id, status, outcome, processed_at)
            VALUES (:id, :key, :pk, :type, :raw, CAST(:headers AS jsonb), :ts, :att, :ip,
                    :order, :cf, :pid, :status, :outcome,
                    CASE WHEN :status = 'received' THEN NULL ELSE now() END)
            ON CONFLICT (dedupe_key) DO UPDATE
               SET duplicates = payment_webhooks.duplicates + 1, last_seen_at = now()
            RETURNING id, (xmax = 0) AS inserted"""),
            {
                **stored,
                "id": uuid.uuid4(),
                "pid": payment_id,
                "status": verdict[0] if verdict else "received",
                "outcome": verdict[1][:500] if verdict else None,
            },
        )
    ).one()
    return row.id, bool(row.inserted)


async def _receive_refund(
    conn: AsyncConnection,
    stored: dict[str, Any],
    data: GatewayRefund | None,
    unreadable: str | None,
) -> Receipt:
    """A refund status webhook: like a payment's, only a prompt to ask Cashfree (the
    refund.processing consumer fetches the refund; the payload is not trusted)."""
    refund = await refunds.by_ref(conn, data.refund_id) if data else None
    verdict: tuple[str, str] | None = None
    mismatch: list[str] = []
    if data is None:
        verdict = ("rejected", unreadable or "payload unreadable")
    elif refund is None:
        verdict = ("ignored", "unknown refund")
    else:
        if data.order_id is not None and data.order_id != refund.order_id:
            mismatch.append("order_id")
        if data.refund_amount_paise != refund.amount_paise:
            mismatch.append("refund_amount")
        if mismatch:
            verdict = ("rejected", f"disagrees with the refund: {mismatch}")
    stored = {**stored, "order": (data.order_id or "")[:100] if data else None}
    webhook_id, inserted = await _store(
        conn, stored, refund.payment_id if refund else None, verdict
    )
    if not inserted:
        return Receipt(webhook_id, "duplicate")
    if refund is None:
        return Receipt(webhook_id, "unknown_order" if data else "ignored")
    if mismatch:
        await fraud.record(
            conn,
            "refund_webhook_mismatch",
            severity="high",
            payment_id=refund.payment_id,
            webhook_id=webhook_id,
            details={"fields": mismatch, "refund_id": str(refund.id)},
        )
        return Receipt(webhook_id, "mismatch")
    await outbox.send(
        conn,
        "refund.processing",
        "refund.webhook",
        {"refund_id": str(refund.id), "source": "webhook", "webhook_id": str(webhook_id)},
        correlation_id=str(refund.id),
    )
    return Receipt(webhook_id, "accepted")


def _disagreements(data: PaymentWebhookData, payment: Payment) -> list[str]:
    """Fields of the webhook that contradict our order (absent fields contradict nothing)."""
    found = [
        name
        for name, value, expected in (
            ("order_amount", data.order.order_amount_paise, payment.amount_paise),
            ("order_currency", data.order.order_currency, payment.currency),
            ("payment_currency", data.payment.payment_currency, payment.currency),
        )
        if value is not None and value != expected
    ]
    if (
        data.payment.payment_status == "SUCCESS"
        and data.payment.payment_amount_paise is not None
        and data.payment.payment_amount_paise != payment.amount_paise
    ):
        found.append("payment_amount")
    return found


async def statuses_for_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> list[str]:
    """What became of each webhook stored for a payment (accepted, duplicate, processed…)."""
    rows = await conn.execute(
        sql("SELECT status FROM payment_webhooks WHERE payment_id = :p ORDER BY received_at"),
        {"p": payment_id},
    )
    return [str(r[0]) for r in rows]


async def mark_processed(conn: AsyncConnection, webhook_id: uuid.UUID, outcome: str) -> None:
    await conn.execute(
        sql("""
        UPDATE payment_webhooks SET status = 'processed', outcome = :o, processed_at = now()
         WHERE id = :id"""),
        {"id": webhook_id, "o": outcome[:500]},
    )


def client_ip(settings: Settings, peer: str | None, forwarded_for: str | None) -> str | None:
    """The sender's address: the TCP peer, or the last untrusted hop of X-Forwarded-For when
    the peer is one of our trusted proxies (anything further left could be forged)."""
    if peer is None:
        return None
    trusted = [ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr.strip())
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not forwarded_for or not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def ip_allowed(settings: Settings, ip: str | None) -> bool:
    if not settings.webhook_allowed_ips:
        return True
    if ip is None:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in settings.webhook_allowed_ips)


def headers_of(raw: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in raw.items()}
