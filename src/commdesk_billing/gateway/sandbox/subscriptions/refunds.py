"""Refunds of charges debited on a mandate (cashfree.md §12.1, §12.5, §12.9):
`POST /subscriptions/{id}/refunds` and `GET /subscriptions/{id}/refunds/{refund_id}`.

A refund is of one SUCCESS charge of that subscription, at most what the charge debited less
its refunds that have not failed (`refund_amount_invalid` otherwise). It is idempotent by
`refund_id` within the subscription: the same details answer the refund made, other details
are `refund_id_already_exists`. UPI refunds are STANDARD only (§12.5). It is made PENDING;
`refund_delay_s` later on the sandbox clock it ends SUCCESS, or FAILED when its `refund_note`
is `FAILED`; a note `PENDING` or `ACTIVE` leaves it PENDING for good (the sandbox trick,
§12.9). Its end is announced by `SUBSCRIPTION_REFUND_STATUS` (§12.8; the event is named
there, its payload is not: the refund entity plus the subscription's ids, an inference).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request, not_found
from commdesk_billing.gateway.sandbox.subscriptions import validation
from commdesk_billing.gateway.sandbox.subscriptions.core import Core
from commdesk_billing.gateway.sandbox.subscriptions.store import (
    P_SUCCESS,
    R_FAILED,
    R_PENDING,
    R_SUCCESS,
    Subscription,
    SubsPayment,
    SubsRefund,
)
from commdesk_billing.gateway.sandbox.wire import Money, dumps, ist_text

REFUND_EVENT = "SUBSCRIPTION_REFUND_STATUS"


class Refunds(Core):
    def create_refund(self, subscription_id: str, body: Any) -> SubsRefund:
        sub = self.subscription(subscription_id)
        req = validation.new_refund(body, subscription_id)
        payment = self._refunded_payment(sub, req)
        fingerprint = hashlib.sha256(
            dumps([payment.payment_id, req.amount_paise, req.note, req.speed])
        ).hexdigest()
        existing = self.store.refunds.get((sub.subscription_id, req.refund_id))
        if existing is not None:
            if existing.fingerprint == fingerprint:
                return existing  # a retry: the refund it already made
            raise bad_request(
                "refund_id_already_exists",
                "refund with the same refund_id but different details already exists",
            )
        if payment.payment_type != "CHARGE" or payment.status != P_SUCCESS:
            raise CashfreeError(
                409, "refund_not_allowed", "payment is not a successful charge; nothing to refund"
            )
        if payment.method == "upi" and req.speed != "STANDARD":
            raise bad_request("refund_speed_invalid", "refund_speed : UPI supports only STANDARD")
        live = [r for r in self.store.payment_refunds(payment.payment_id) if r.status != R_FAILED]
        if req.amount_paise > payment.amount_paise - sum(r.amount_paise for r in live):
            raise bad_request(
                "refund_amount_invalid",
                "refund_amount : more than the paid amount not yet refunded",
            )
        now = self.clock.now()
        # The sandbox trick (§12.9): the note forces the outcome.
        final = None if req.note in ("PENDING", "ACTIVE") else R_SUCCESS
        if req.note == "FAILED":
            final = R_FAILED
        refund = SubsRefund(
            cf_refund_id=self.store.next_cf_refund_id(),
            refund_id=req.refund_id,
            subscription_id=sub.subscription_id,
            payment_id=payment.payment_id,
            cf_payment_id=payment.cf_payment_id,
            amount_paise=req.amount_paise,
            note=req.note,
            speed=req.speed,
            created_at=now,
            fingerprint=fingerprint,
            settle_at=None if final is None else now + timedelta(seconds=self._refund_delay()),
            final=final,
        )
        self.store.refunds[(sub.subscription_id, refund.refund_id)] = refund
        return refund

    def _refund_delay(self) -> float:
        return self.settings.refund_delay_s

    def _refunded_payment(self, sub: Subscription, req: validation.NewRefund) -> SubsPayment:
        payment = self.store.payments.get(req.payment_id) if req.payment_id else None
        if payment is None and req.cf_payment_id is not None and req.payment_id is None:
            payment = next(
                (
                    p
                    for p in self.store.subscription_payments(sub.subscription_id)
                    if p.cf_payment_id == req.cf_payment_id
                ),
                None,
            )
        if payment is None or payment.subscription_id != sub.subscription_id:
            raise not_found("payment_does_not_exist", "payment does not exist")
        if req.cf_payment_id is not None and req.cf_payment_id != payment.cf_payment_id:
            raise bad_request("cf_payment_id_invalid", "cf_payment_id : does not match payment_id")
        return payment

    def refund(self, subscription_id: str, refund_id: str) -> SubsRefund:
        sub = self.subscription(subscription_id)
        refund = self.store.refunds.get((sub.subscription_id, refund_id))
        if refund is None:
            raise not_found("refund_not_found", "refund not found for this subscription")
        return refund

    def _due_refunds(self, now: datetime) -> None:
        for refund in list(self.store.refunds.values()):
            if refund.status != R_PENDING or refund.settle_at is None or refund.final is None:
                continue
            if refund.settle_at <= now:
                refund.status = refund.final
                refund.processed_at = now
                refund.settle_at = None
                sub = self.store.subscriptions[refund.subscription_id]
                body = refund_webhook(refund, sub, now)
                self._publish(body, refund.cf_refund_id, sub, refund.cf_refund_id, refund.status)


def refund_entity(refund: SubsRefund) -> dict[str, Any]:
    """`SubscriptionPaymentRefundEntity` (the SDK's fields: cashfree.md §12.1 names it)."""
    return {
        "payment_id": refund.payment_id,
        "cf_payment_id": refund.cf_payment_id,
        "refund_id": refund.refund_id,
        "cf_refund_id": refund.cf_refund_id,
        "refund_amount": Money(refund.amount_paise),
        "refund_note": refund.note,
        "refund_speed": refund.speed,
        "refund_status": refund.status,
    }


def refund_webhook(refund: SubsRefund, sub: Subscription, event_time: datetime) -> dict[str, Any]:
    data = refund_entity(refund) | {
        "subscription_id": sub.subscription_id,
        "cf_subscription_id": sub.cf_subscription_id,
    }
    return {"data": data, "event_time": ist_text(event_time), "type": REFUND_EVENT}
