"""Reading a signed webhook body: what it is, under which key it is deduplicated, and the
signed facts two deliveries under one key must agree on.

Everything here runs after the signature was checked, on bytes that are Cashfree's (or a
holder of our secret's). Reading never raises: a body that cannot be read becomes a
`Delivery` with `unreadable` set, which the receiver stores as `rejected` and answers 200.
Cashfree retries every delivery not answered 200 until its retry policy gives up, and a
signed body's bytes are the same on every retry, so any other answer could only repeat
itself; keeping it answers Cashfree, and keeps the bytes for whoever looks into it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from commdesk_billing.gateway.amounts import AmountError
from commdesk_billing.gateway.models import PaymentWebhookData, WebhookEnvelope
from commdesk_billing.gateway.models import Refund as GatewayRefund
from commdesk_billing.security.jsondepth import MAX_JSON_DEPTH, too_deep
from commdesk_billing.security.text import unstorable_text

PAYMENT_EVENTS = frozenset(
    {"PAYMENT_SUCCESS_WEBHOOK", "PAYMENT_FAILED_WEBHOOK", "PAYMENT_USER_DROPPED_WEBHOOK"}
)
REFUND_EVENTS = frozenset({"REFUND_STATUS_WEBHOOK"})
UNREADABLE_TYPE = "(unreadable)"


@dataclass(frozen=True)
class Delivery:
    """One signed body, read. `unreadable` says why the body as a whole could not be read
    (nothing else is set then); `payload_problem` why a known event's payload could not."""

    event: WebhookEnvelope | None
    payment: PaymentWebhookData | None = None
    refund: GatewayRefund | None = None
    unreadable: str | None = None
    payload_problem: str | None = None

    @property
    def type(self) -> str:
        return self.event.type[:100] if self.event else UNREADABLE_TYPE


def read(body: bytes) -> Delivery:
    if too_deep(body):
        return Delivery(None, unreadable=f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        parsed = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return Delivery(None, unreadable="not JSON")
    # Before any model looks at it, and over the whole document: an id with a NUL in it
    # would otherwise reach the dedupe key, a lone surrogate the refund lookup.
    problem = unstorable_text(parsed)
    if problem:
        return Delivery(None, unreadable=problem)
    try:
        event = WebhookEnvelope.model_validate(parsed)
    except ValidationError:
        return Delivery(None, unreadable="not a Cashfree event")
    if event.type in PAYMENT_EVENTS:
        try:
            return Delivery(event, payment=PaymentWebhookData.model_validate(event.data))
        except (ValidationError, AmountError) as exc:
            return Delivery(event, payload_problem=f"payload unreadable: {str(exc)[:300]}")
    if event.type in REFUND_EVENTS:
        try:
            return Delivery(event, refund=GatewayRefund.model_validate(event.data.get("refund")))
        except (ValidationError, AmountError) as exc:
            return Delivery(event, payload_problem=f"payload unreadable: {str(exc)[:300]}")
    return Delivery(event)


def dedupe_key(delivery: Delivery, body: bytes) -> str:
    """One delivery identity per event, built from the signed body only. Cashfree's
    x-idempotency-key header is not covered by the signature, so someone replaying a captured
    delivery with fresh header values must not make it new; the header is kept as evidence.

    The key names the event (type, order, payment or refund, status); what it leaves out is
    compared by `differences` when a second delivery arrives under it."""
    event = delivery.event
    if event is None:
        return f"unreadable:{hashlib.sha256(body).hexdigest()}"
    data = delivery.payment
    if data is not None:
        key = (
            f"{event.type}:{data.order.order_id}:{data.payment.cf_payment_id}:"
            f"{data.payment.payment_status}"
        )
        return key[:500]
    payload = event.data
    refund = payload.get("refund") if isinstance(payload.get("refund"), dict) else None
    if refund and refund.get("refund_id") is not None:
        key = (
            f"{event.type}:{refund.get('order_id')}:{refund.get('refund_id')}:"
            f"{refund.get('refund_status')}"
        )
        return key[:500]
    digest = uuid.uuid5(uuid.NAMESPACE_OID, json.dumps(payload, sort_keys=True, default=str))
    return f"{event.type[:400]}:body:{digest}"


def content(delivery: Delivery) -> dict[str, Any] | None:
    """The signed facts our checks read that the dedupe key leaves out (amounts, currencies,
    the refund's order). Cashfree's own retries carry the same ones; two deliveries that
    disagree on them are not one delivery twice. None: the key covers the whole content
    (a body digest)."""
    if delivery.payment is not None:
        order, payment = delivery.payment.order, delivery.payment.payment
        return {
            "order_amount": order.order_amount_paise,
            "order_currency": order.order_currency,
            "payment_amount": payment.payment_amount_paise,
            "payment_currency": payment.payment_currency,
        }
    if delivery.refund is not None:
        refund = delivery.refund
        return {
            "order_id": refund.order_id,
            "refund_amount": refund.refund_amount_paise,
            "refund_currency": refund.refund_currency,
        }
    return None


def differences(new: Delivery, stored_body: bytes) -> list[str]:
    """The facts of `content` on which `new` and the stored delivery disagree."""
    mine, theirs = content(new), content(read(stored_body))
    if mine is None or theirs is None:
        return []
    return sorted(name for name in mine if mine[name] != theirs.get(name))
