"""Receiving Cashfree webhooks (DESIGN §5): verify, store raw, dedupe, hand over, answer.

Nothing here grants credits or trusts the payload's claims: a verified webhook only causes
`payment.processing`, which asks Cashfree's API for the truth. What the receiver does:

1. the signature over the exact bytes, with every configured secret (rotation), compared in
   constant time; a forged or altered body is refused with 401 and not stored;
2. the signature timestamp within a window wide enough for Cashfree's own retries;
3. read the body (`reading.py`); one that cannot be read (not JSON, not an event, nested
   too deeply, text PostgreSQL cannot store) is stored `rejected` and answered 200, so that
   Cashfree stops retrying it;
4. store the raw body and headers once per delivery identity (the signed type, order,
   payment or refund and status; never the unsigned x-idempotency-key): a repeat only bumps
   a counter, but a delivery under a stored identity whose signed amounts or currencies
   differ from the stored one's is not a repeat: it is stored apart, `rejected`, with a
   `webhook_content_mismatch` fraud event, and answered `mismatch`;
5. checks against our order or refund (unknown: recorded and answered; amount or currency
   that disagree with ours: a fraud event, and not acted on);
6. in the same transaction, `payment.processing` (or `refund.processing`) into the outbox.

The common case, the first delivery of a payment event that agrees with our order, takes a
shorter road (`_accept_first`): the order's facts, then one statement that stores the row
and, only if it was stored (not a repeat), its outbox row; one statement is one transaction,
so the row and its command still commit together. Anything else (a repeat, a contradiction,
an unknown order, a refund, an unreadable body) goes the whole way, in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, on_driver
from commdesk_billing.db.sql import sql
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.models import PaymentWebhookData
from commdesk_billing.modules.fraud import service as fraud
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.refunds import reads as refunds
from commdesk_billing.modules.webhooks import reading
from commdesk_billing.queues import outbox
from commdesk_billing.security.text import unstorable_text
from commdesk_billing.telemetry.metrics import WEBHOOKS_RECEIVED

log = structlog.get_logger(__name__)

# Headers worth keeping as evidence (never Authorization-like ones: Cashfree sends none).
_KEPT_HEADERS = (*signature.EVIDENCE_HEADERS, "user-agent")


class WebhookRefused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Receipt:
    webhook_id: uuid.UUID | None
    outcome: str  # accepted | duplicate | unknown_order | mismatch | ignored | rejected


def _secrets(settings: Settings) -> list[str]:
    return [settings.cashfree_client_secret.get_secret_value()] + [
        s.get_secret_value() for s in settings.cashfree_previous_secrets
    ]


def authenticate(settings: Settings, body: bytes, headers: dict[str, str]) -> str:
    """Check signature and timestamp; return the timestamp header. Raises WebhookRefused."""
    try:
        return signature.check(
            headers,
            body,
            _secrets(settings),
            max_age_s=settings.webhook_max_age_s,
            max_future_s=settings.webhook_max_future_s,
        )
    except signature.Refused as exc:
        raise WebhookRefused(401, exc.code, exc.detail) from exc


def _evidence(headers: dict[str, str]) -> dict[str, Any]:
    """The unsigned headers worth keeping, as far as they can be stored (they are Cashfree's
    word only, so one that cannot be is dropped rather than refusing the delivery)."""
    kept = signature.evidence(headers, _KEPT_HEADERS)
    attempt = headers.get("x-webhook-attempt", "")
    return {
        "pk": (kept.get("x-idempotency-key") or "")[:200] or None,
        "headers": json.dumps(kept),
        "att": int(attempt)
        if attempt.isascii() and attempt.isdigit() and len(attempt) < 6
        else None,
    }


async def receive(
    engine: AsyncEngine, settings: Settings, body: bytes, headers: dict[str, str], peer: str | None
) -> Receipt:
    ts = authenticate(settings, body, headers)
    delivery = reading.read(body)
    data = delivery.payment
    stored = {
        **_evidence(headers),
        "key": reading.dedupe_key(delivery, body),
        "type": delivery.type,
        "raw": body,
        "ts": ts,
        "ip": peer[:100] if peer and unstorable_text(peer) is None else None,
        "order": data.order.order_id[:100] if data else None,
        "cf": data.payment.cf_payment_id[:100] if data else None,
    }
    if (
        data is not None
        and delivery.unreadable is None
        and delivery.type in reading.PAYMENT_EVENTS
        and delivery.type not in reading.REFUND_EVENTS
    ):
        accepted = await _accept_first(engine, stored, data)
        if accepted is not None:
            WEBHOOKS_RECEIVED.labels(accepted.outcome).inc()
            return accepted

    async def work(conn: AsyncConnection) -> Receipt:
        if delivery.unreadable is not None:
            # Signed, so Cashfree's (or a holder of our secret's): kept and answered 200, so
            # that Cashfree stops retrying bytes that can never be read (reading.py).
            log.warning("webhook.unreadable", reason=delivery.unreadable)
            why = ("rejected", f"body unreadable: {delivery.unreadable}")
            stored_as = await _store(conn, stored, delivery, None, why)
            return Receipt(stored_as.webhook_id, "rejected" if stored_as.inserted else "duplicate")
        if delivery.type in reading.REFUND_EVENTS:
            return await _receive_refund(conn, stored, delivery)
        payment = await payments.by_order_id(conn, data.order.order_id) if data else None
        verdict: tuple[str, str] | None = None  # (status, outcome) when not acted on
        mismatch: list[str] = []
        if delivery.type not in reading.PAYMENT_EVENTS:
            # Kept as evidence (settlements, disputes…): nothing here acts on them yet.
            verdict = ("ignored", f"no handler for {delivery.type}")
        elif data is None:
            verdict = ("rejected", delivery.payload_problem or "payload unreadable")
        elif payment is None:
            verdict = ("ignored", "unknown order")
        else:
            mismatch = _disagreements(data, payment.amount_paise, payment.currency)
            if mismatch:
                verdict = ("rejected", f"disagrees with the order: {mismatch}")
        stored_as = await _store(conn, stored, delivery, payment.id if payment else None, verdict)
        webhook_id = stored_as.webhook_id
        if stored_as.differs:
            return await _content_mismatch(
                conn,
                stored_as,
                payment_id=payment.id if payment else None,
                user_id=payment.user_id if payment else None,
                details={"disagrees_with_order": mismatch},
            )
        if not stored_as.inserted:
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


# The delivery stored as `_INSERT` stores one acted on (status received, no outcome), and,
# only if that made the row, its `payment.processing` command: one statement, so both commit
# or neither. No row back: the key was stored before (a repeat, or a different delivery under
# it), which the transactional path sorts out.
_ACCEPT = """
    WITH stored AS (
        INSERT INTO payment_webhooks (id, dedupe_key, provider_key, event_type,
            raw_body, headers, signature_timestamp, delivery_attempt, source_ip,
            order_id, cf_payment_id, payment_id, status)
        VALUES ($1, $2, $3, $4, $5, CAST($6::text AS jsonb), $7, $8, $9, $10, $11, $12,
                'received')
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING id)
    """ + outbox.command_row_per("stored", first_param=13)


async def _accept_first(
    engine: AsyncEngine, stored: dict[str, Any], data: PaymentWebhookData
) -> Receipt | None:
    """Accept the first delivery of a payment event that agrees with our order in two
    statements on the driver (no BEGIN or COMMIT: the one that writes is atomic by itself).
    None when it is anything else (no such order, a contradiction, a key stored before) or
    the connection failed: nothing was written then (a statement that fails writes nothing;
    one whose answer was lost reads as a repeat), and the caller takes the transactional
    path, which reads everything again and answers as it always has.

    The order is read as the transactional path reads it (READ COMMITTED, no lock): its
    amount and currency never change once it exists, and the worker that acts on
    `payment.processing` asks Cashfree and locks the payment itself."""
    webhook_id = uuid.uuid4()

    async def work(driver: asyncpg.Connection[Any]) -> Receipt | None:
        order = await payments.order_facts(driver, data.order.order_id)
        if order is None or _disagreements(data, order["amount_paise"], order["currency"]):
            return None
        payment_id = uuid.UUID(str(order["id"]))
        command = outbox.command(
            "payment.processing",
            "payment.webhook",
            {
                "payment_id": str(payment_id),
                "order_id": order["order_id"],
                "order_expires_at": order["order_expires_at"].isoformat(),
                "source": "webhook",
                "webhook_id": str(webhook_id),
            },
            correlation_id=str(payment_id),
        )
        row = await driver.fetchrow(
            _ACCEPT,
            webhook_id,
            stored["key"],
            stored["pk"],
            stored["type"],
            stored["raw"],
            stored["headers"],
            stored["ts"],
            stored["att"],
            stored["ip"],
            stored["order"],
            stored["cf"],
            payment_id,
            command.id,
            "payment.processing",
            command.type,
            command.model_dump_json(),
        )
        return Receipt(webhook_id, "accepted") if row is not None else None

    try:
        return await on_driver(engine, work)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # Not the database being unavailable (that raised DatabaseUnavailable): a dropped
        # connection, or an error the transactional path will meet and report the usual way.
        log.warning("webhook.accept_first_failed", error=type(exc).__name__)
        return None


@dataclass(frozen=True)
class _Stored:
    webhook_id: uuid.UUID
    inserted: bool  # this delivery made the row (not a repeat of one stored)
    # Set when a delivery stored before under the same dedupe key disagrees with this one:
    # the facts they disagree on, and the first one's row (this one is in a row of its own).
    differs: list[str] = field(default_factory=list)
    first_id: uuid.UUID | None = None


_INSERT = """
    INSERT INTO payment_webhooks (id, dedupe_key, provider_key, event_type,
        raw_body, headers, signature_timestamp, delivery_attempt, source_ip,
        order_id, cf_payment_id, payment_id, status, outcome, processed_at)
    VALUES (:id, :key, :pk, :type, :raw, CAST(:headers AS jsonb), :ts, :att, :ip,
            :order, :cf, :pid, :status, :outcome,
            CASE WHEN :status = 'received' THEN NULL ELSE now() END)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id"""


async def _content_mismatch(
    conn: AsyncConnection,
    stored_as: _Stored,
    *,
    payment_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
    details: dict[str, Any],
) -> Receipt:
    """A signed delivery that contradicts the one stored under its identity: a fraud event
    naming what differs and the first delivery; the delivery itself is never acted on."""
    await fraud.record(
        conn,
        "webhook_content_mismatch",
        severity="high",
        payment_id=payment_id,
        user_id=user_id,
        webhook_id=stored_as.webhook_id,
        details={
            "fields": stored_as.differs,
            "first_webhook_id": str(stored_as.first_id),
            **details,
        },
    )
    return Receipt(stored_as.webhook_id, "mismatch")


async def _store(
    conn: AsyncConnection,
    stored: dict[str, Any],
    delivery: reading.Delivery,
    payment_id: uuid.UUID | None,
    verdict: tuple[str, str] | None,
) -> _Stored:
    """Insert the delivery once per dedupe key. A repeat of a stored delivery bumps its
    counter; one whose signed content differs from the stored one's (`reading.differences`)
    is not a repeat: it gets a row of its own, `rejected`, under the key plus its body's
    digest (so its own repeats are counted on that row)."""
    values = {
        **stored,
        "id": uuid.uuid4(),
        "pid": payment_id,
        "status": verdict[0] if verdict else "received",
        "outcome": verdict[1][:500] if verdict else None,
    }
    row = (await conn.execute(sql(_INSERT), values)).first()
    if row is not None:
        return _Stored(row.id, True)
    # Someone stored this key first (committed: ON CONFLICT waited for it); lock its row for
    # the counter.
    first = (
        await conn.execute(
            sql("""
            SELECT id, raw_body FROM payment_webhooks WHERE dedupe_key = :key FOR UPDATE"""),
            {"key": stored["key"]},
        )
    ).one()
    differs = reading.differences(delivery, bytes(first.raw_body))
    if not differs:
        await _count_repeat(conn, first.id)
        return _Stored(first.id, False)
    digest = hashlib.sha256(stored["raw"]).hexdigest()
    outcome = f"differs from webhook {first.id} stored under the same dedupe key: {differs}"
    values = {
        **values,
        "key": f"{stored['key'][:400]}:differs:{digest}",
        "status": "rejected",
        "outcome": outcome[:500],
    }
    row = (await conn.execute(sql(_INSERT), values)).first()
    if row is not None:
        return _Stored(row.id, True, differs, first.id)
    again = (
        await conn.execute(
            sql("SELECT id FROM payment_webhooks WHERE dedupe_key = :key FOR UPDATE"),
            {"key": values["key"]},
        )
    ).one()
    await _count_repeat(conn, again.id)
    return _Stored(again.id, False)


async def _count_repeat(conn: AsyncConnection, webhook_id: uuid.UUID) -> None:
    await conn.execute(
        sql("""
        UPDATE payment_webhooks SET duplicates = duplicates + 1, last_seen_at = now()
         WHERE id = :id"""),
        {"id": webhook_id},
    )


async def _receive_refund(
    conn: AsyncConnection, stored: dict[str, Any], delivery: reading.Delivery
) -> Receipt:
    """A refund status webhook: like a payment's, only a prompt to ask Cashfree (the
    refund.processing consumer fetches the refund; the payload is not trusted)."""
    data = delivery.refund
    refund = await refunds.by_ref(conn, data.refund_id) if data else None
    verdict: tuple[str, str] | None = None
    mismatch: list[str] = []
    if data is None:
        verdict = ("rejected", delivery.payload_problem or "payload unreadable")
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
    stored_as = await _store(conn, stored, delivery, refund.payment_id if refund else None, verdict)
    webhook_id = stored_as.webhook_id
    if stored_as.differs:
        return await _content_mismatch(
            conn,
            stored_as,
            payment_id=refund.payment_id if refund else None,
            user_id=None,
            details={
                "disagrees_with_refund": mismatch,
                "refund_id": str(refund.id) if refund else None,
            },
        )
    if not stored_as.inserted:
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


def _disagreements(data: PaymentWebhookData, amount_paise: int, currency: str) -> list[str]:
    """Fields of the webhook that contradict our order (absent fields contradict nothing)."""
    found = [
        name
        for name, value, expected in (
            ("order_amount", data.order.order_amount_paise, amount_paise),
            ("order_currency", data.order.order_currency, currency),
            ("payment_currency", data.payment.payment_currency, currency),
        )
        if value is not None and value != expected
    ]
    if (
        data.payment.payment_status == "SUCCESS"
        and data.payment.payment_amount_paise is not None
        and data.payment.payment_amount_paise != amount_paise
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


def headers_of(raw: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in raw.items()}


async def deliveries_for_order(conn: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    """Cashfree's deliveries about one order (payment and refund events), oldest first:
    what the finance console shows of a payment. Bodies are not read here."""
    rows = await conn.execute(
        sql("""
        SELECT id, event_type, cf_payment_id, status, outcome, duplicates, delivery_attempt,
               received_at, processed_at
          FROM payment_webhooks WHERE order_id = :o ORDER BY received_at, id"""),
        {"o": order_id},
    )
    return [dict(r._mapping) for r in rows]
