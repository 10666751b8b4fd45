"""Charges on a mandate (cashfree.md §12.5, §12.7, §15): raised with the pre-debit notification
sent at once, debited no earlier than `pdn_lead_s` after it nor before the schedule date, then
SUCCESS, or for UPI a failed attempt retried hourly up to three times (PENDING meanwhile)
before FAILED; a card charge fails at once and puts the mandate ON_HOLD. Also the merchant's
cancel and retry of a charge, and the payer's revocation, which fails every open charge."""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from typing import Any

from commdesk_billing.gateway.sandbox.errors import not_found
from commdesk_billing.gateway.sandbox.subscriptions import validation
from commdesk_billing.gateway.sandbox.subscriptions.core import Core, not_allowed
from commdesk_billing.gateway.sandbox.subscriptions.store import (
    ACTIVE,
    CANCELLED,
    CUSTOMER_CANCELLED,
    CUSTOMER_PAUSED,
    ENDED,
    ON_HOLD,
    OPEN,
    P_CANCELLED,
    P_FAILED,
    P_INITIALIZED,
    P_PENDING,
    P_SUCCESS,
    PAUSED,
    Outcome,
    Subscription,
    SubsPayment,
)
from commdesk_billing.gateway.sandbox.wire import IST

# RBI's cap on a recurring card/UPI debit without additional factor authentication (§15).
AFA_FREE_CAP_PAISE = 15_000_00
# UPI AutoPay and cards: a charge raised at or after 21:00 IST cannot be for the next day.
LATE_HOUR = 21
MAX_DAYS_AHEAD = 14
PAYER_REASONS = {
    CUSTOMER_CANCELLED: "MANDATE_REVOKED",
    CUSTOMER_PAUSED: "MANDATE_PAUSED",
    PAUSED: "SUBSCRIPTION_PAUSED",
    CANCELLED: "SUBSCRIPTION_CANCELLED",
    ON_HOLD: "SUBSCRIPTION_ON_HOLD",
}


def digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=IST)


def first_debit_day(moment: datetime) -> date:
    """The earliest schedule date for a UPI/card charge raised (or a mandate authorised) at
    `moment`: T+1 before 21:00 IST, T+2 from 21:00 (§12.5)."""
    local = moment.astimezone(IST)
    return local.date() + timedelta(days=1 if local.hour < LATE_HOUR else 2)


class Charges(Core):
    def _due_charges(self, now: datetime) -> None:
        due = sorted(
            (
                p
                for p in self.store.payments.values()
                if p.payment_type == "CHARGE" and p.status in OPEN and p.debit_at is not None
            ),
            key=lambda p: (p.debit_at, p.cf_payment_id),
        )
        for payment in due:
            while payment.status in OPEN and payment.debit_at is not None:
                if payment.debit_at > now:
                    break
                self._attempt(payment)

    def _charge(
        self, sub: Subscription, req: validation.NewPayment, fingerprint: str
    ) -> SubsPayment:
        assert req.amount_paise is not None
        if sub.status != ACTIVE:
            raise not_allowed(
                f"subscription is {sub.status}; charges need an ACTIVE subscription",
                code="subscription_not_active",
            )
        if req.amount_paise > sub.plan.max_amount_paise:
            raise validation.refuse(
                "payment_amount_invalid", "payment_amount : should not exceed plan_max_amount"
            )
        if sub.auth_method in ("upi", "card") and req.amount_paise > AFA_FREE_CAP_PAISE:
            raise validation.refuse(
                "payment_amount_invalid",
                "payment_amount : above 15000.00 a UPI or card mandate debit needs the payer's "
                "additional factor authentication",
            )
        now = self.clock.now()
        if req.schedule_date is None:
            raise validation.refuse(
                "payment_schedule_date_missing",
                "payment_schedule_date : is required for UPI and card mandates",
            )
        earliest = max(first_debit_day(now), first_debit_day(sub.authorized_at or now))
        latest = now.astimezone(IST).date() + timedelta(days=MAX_DAYS_AHEAD)
        if not earliest <= req.schedule_date <= latest:
            raise validation.refuse(
                "payment_schedule_date_invalid",
                f"payment_schedule_date : should be from {earliest} to {latest} "
                "(UPI and card charges: T+1 when raised before 21:00 IST, else T+2; at most T+14)",
            )
        payment = self._new_payment(sub, req.payment_id, "CHARGE", fingerprint)
        payment.amount_paise = req.amount_paise
        payment.schedule_date = req.schedule_date
        payment.remarks = req.remarks
        payment.method = sub.auth_method
        self._notify_debit(payment, sub, _day_start(req.schedule_date))
        return payment

    def _notify_debit(self, payment: SubsPayment, sub: Subscription, not_before: datetime) -> None:
        """The pre-debit notification, sent now; the debit waits `pdn_lead_s` after it."""
        now = self.clock.now()
        payment.pdn_at = now
        payment.pdn_count += 1
        payment.debit_at = max(now + timedelta(seconds=self.settings.pdn_lead_s), not_before)
        self._publish_payment("SUBSCRIPTION_PAYMENT_NOTIFICATION_INITIATED", payment, sub)

    def _attempt(self, payment: SubsPayment) -> None:
        sub = self.store.subscriptions[payment.subscription_id]
        if sub.status != ACTIVE:
            self._fail(payment, sub, PAYER_REASONS.get(sub.status, "SUBSCRIPTION_INACTIVE"))
            return
        if payment.outcome is None:
            payment.outcome = sub.outcomes.pop(0) if sub.outcomes else Outcome("success")
        outcome = payment.outcome
        payment.attempts += 1
        if outcome.kind == "pending":
            payment.status, payment.debit_at = P_PENDING, None  # only /pg/simulate ends it
        elif outcome.kind == "revoked":
            self.payer_revoke(sub)  # fails this charge with the others
        elif outcome.kind == "paused":
            self._set_status(sub, CUSTOMER_PAUSED)
            self._fail(payment, sub, "MANDATE_PAUSED")
        elif outcome.kind == "failure" and payment.attempts <= outcome.failed_attempts:
            retries_left = payment.method == "upi" and payment.retry_attempts < (
                self.settings.upi_retries
            )
            if retries_left and payment.debit_at is not None:
                payment.retry_attempts += 1
                payment.status = P_PENDING
                payment.failure_reason = outcome.reason
                payment.debit_at += timedelta(seconds=self.settings.upi_retry_s)
            else:
                self._fail(payment, sub, outcome.reason)
                if payment.method == "card":
                    self._set_status(sub, ON_HOLD)
        else:
            self._end(payment, P_SUCCESS, None)
            payment.cf_txn_id = digits(10)
            self._publish_payment("SUBSCRIPTION_PAYMENT_SUCCESS", payment, sub)

    # Payments ---------------------------------------------------------------------------

    def payments(self, subscription_id: str) -> tuple[list[SubsPayment], Subscription]:
        sub = self.subscription(subscription_id)
        return self.store.subscription_payments(subscription_id), sub

    def payment(self, subscription_id: str, payment_id: str) -> tuple[SubsPayment, Subscription]:
        sub = self.subscription(subscription_id)
        payment = self.store.payments.get(payment_id)
        if payment is None or payment.subscription_id != subscription_id:
            raise not_found("payment_does_not_exist", "payment does not exist")
        return payment, sub

    def manage_payment(
        self, subscription_id: str, payment_id: str, body: Any
    ) -> tuple[SubsPayment, Subscription]:
        payment, sub = self.payment(subscription_id, payment_id)
        validation.payment_ref(body, payment_id)
        req = validation.manage(body, subscription_id, ("CANCEL", "RETRY"))
        if payment.payment_type != "CHARGE":
            raise not_allowed("only charges can be managed")
        if req.action == "CANCEL":
            if payment.status not in OPEN:
                raise not_allowed(f"payment is {payment.status}; it cannot be cancelled")
            self._end(payment, P_CANCELLED, "CANCELLED_BY_MERCHANT")
            self._publish_payment("SUBSCRIPTION_PAYMENT_CANCELLED", payment, sub)
            return payment, sub
        if payment.status != P_FAILED:
            raise not_allowed(f"payment is {payment.status}; only FAILED can be retried")
        if sub.status != ACTIVE:
            raise not_allowed(
                f"subscription is {sub.status}; charges need an ACTIVE subscription",
                code="subscription_not_active",
            )
        if req.next_scheduled_time is None:
            raise validation.refuse(
                "next_scheduled_time_missing",
                "action_details.next_scheduled_time : is required for RETRY",
            )
        payment.status = P_INITIALIZED
        payment.failure_reason = None
        payment.attempts = 0
        payment.retry_attempts = 0
        payment.outcome = None
        payment.completed_at = None
        self._notify_debit(payment, sub, req.next_scheduled_time)
        return payment, sub

    # The payer ---------------------------------------------------------------------------

    def queue_outcome(self, sub: Subscription, outcome: Outcome) -> None:
        sub.outcomes.append(outcome)

    def payer_revoke(self, sub: Subscription) -> None:
        if sub.status in ENDED:
            raise not_allowed(f"subscription is {sub.status}")
        self._set_status(sub, CUSTOMER_CANCELLED)
        for payment in self._open_charges(sub):
            self._fail(payment, sub, "MANDATE_REVOKED")
