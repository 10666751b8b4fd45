"""What Cashfree Subscriptions does in the sandbox (cashfree.md §12, §15), on the shared clock.

Subscription: INITIALIZED -> ACTIVE (payer approves on the hosted page, UPI AutoPay or card) |
LINK_EXPIRED (not approved before the link expires; a decline leaves it INITIALIZED to try
again). ACTIVE <-> PAUSED (merchant, PERIODIC only), ACTIVE <-> CUSTOMER_PAUSED (payer),
ACTIVE -> ON_HOLD (a card charge failed) -> ACTIVE (merchant ACTIVATE), any live status ->
CANCELLED (merchant) | CUSTOMER_CANCELLED (payer revokes).

Charge: raised INITIALIZED with the pre-debit notification sent at once
(`SUBSCRIPTION_PAYMENT_NOTIFICATION_INITIATED`); debited no earlier than `pdn_lead_s` after it
nor before the schedule date; then SUCCESS, or for UPI a failed attempt is retried hourly up
to three times (PENDING meanwhile) before FAILED; a card charge fails at once and puts the
mandate ON_HOLD. Due steps run on `tick()`: every `subscription_tick_s`, on every
subscriptions call, and when `/_sandbox/clock` moves the clock.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime, timedelta
from typing import Any

from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request, not_found
from commdesk_billing.gateway.sandbox.subscriptions import entities, validation
from commdesk_billing.gateway.sandbox.subscriptions.settings import SubscriptionSettings
from commdesk_billing.gateway.sandbox.subscriptions.store import (
    ACTIVE,
    CANCELLED,
    CUSTOMER_CANCELLED,
    CUSTOMER_PAUSED,
    ENDED,
    INITIALIZED,
    LINK_EXPIRED,
    ON_HOLD,
    OPEN,
    P_CANCELLED,
    P_FAILED,
    P_INITIALIZED,
    P_PENDING,
    P_SUCCESS,
    PAUSED,
    Outcome,
    Plan,
    Subscription,
    SubsPayment,
    SubsStore,
)
from commdesk_billing.gateway.sandbox.webhooks import Event, Notifier, event_key
from commdesk_billing.gateway.sandbox.wire import IST, Clock, dumps

# RBI's cap on a recurring card/UPI debit without additional factor authentication (§15).
AFA_FREE_CAP_PAISE = 15_000_00
# UPI AutoPay and cards: a charge raised at or after 21:00 IST cannot be for the next day.
LATE_HOUR = 21
MAX_DAYS_AHEAD = 14
# Cashfree's status webhook fires on every status but a merchant's PAUSE (§12.8).
QUIET_STATUSES = frozenset({PAUSED, INITIALIZED})
UPI_VPA = "sandbox.payer@okaxis"
PAYER_REASONS = {
    CUSTOMER_CANCELLED: "MANDATE_REVOKED",
    CUSTOMER_PAUSED: "MANDATE_PAUSED",
    PAUSED: "SUBSCRIPTION_PAUSED",
    CANCELLED: "SUBSCRIPTION_CANCELLED",
    ON_HOLD: "SUBSCRIPTION_ON_HOLD",
}


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=IST)


def first_debit_day(moment: datetime) -> date:
    """The earliest schedule date for a UPI/card charge raised (or a mandate authorised) at
    `moment`: T+1 before 21:00 IST, T+2 from 21:00 (§12.5)."""
    local = moment.astimezone(IST)
    return local.date() + timedelta(days=1 if local.hour < LATE_HOUR else 2)


class SubscriptionSandbox:
    def __init__(self, settings: SubscriptionSettings, *, clock: Clock, notifier: Notifier) -> None:
        self.settings = settings
        self.clock = clock
        self.notifier = notifier
        self.store = SubsStore()

    # Clock ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Everything due by now: links expire, debits happen (and UPI retries)."""
        now = self.clock.now()
        for sub in list(self.store.subscriptions.values()):
            if sub.status == INITIALIZED and sub.link_expires_at <= now:
                self._expire_link(sub)
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

    def _expire_link(self, sub: Subscription) -> None:
        sub.status = LINK_EXPIRED
        for payment in self.store.subscription_payments(sub.subscription_id):
            if payment.payment_type == "AUTH" and payment.status in OPEN:
                self._end(payment, P_FAILED, "LINK_EXPIRED")
                self._publish_payment("SUBSCRIPTION_AUTH_STATUS", payment, sub)
        self._publish_status(sub)

    # Plans ----------------------------------------------------------------------------

    def create_plan(self, body: Any) -> Plan:
        req = validation.new_plan(body)
        assert req.plan_id is not None
        if req.plan_id in self.store.plans:
            raise CashfreeError(409, "plan_already_exists", "plan with the same plan_id exists")
        plan = _plan(req.plan_id, req)
        self.store.plans[plan.plan_id] = plan
        return plan

    def plan(self, plan_id: str) -> Plan:
        plan = self.store.plans.get(plan_id)
        if plan is None:
            raise not_found("plan_does_not_exist", "plan does not exist")
        return plan

    # Subscriptions --------------------------------------------------------------------

    def create_subscription(self, body: Any) -> Subscription:
        self.tick()
        req = validation.new_subscription(body)
        if req.subscription_id in self.store.subscriptions:
            raise CashfreeError(
                409,
                "subscription_already_exists",
                "subscription with the same subscription_id exists",
            )
        if req.plan is not None:
            plan = _plan(req.subscription_id[:40], req.plan)
        else:
            assert req.plan_id is not None
            plan = self.plan(req.plan_id)
        now = self.clock.now()
        expiry = req.expiry_time or now + timedelta(days=3650)
        if expiry <= now:
            raise validation.refuse(
                "subscription_expiry_time_invalid",
                "subscription_expiry_time : should be in the future",
            )
        link_expiry = req.session_expiry or now + timedelta(seconds=self.settings.link_ttl_s)
        auth_paise = req.auth_amount_paise if req.auth_amount_paise is not None else 100
        if auth_paise > plan.max_amount_paise:
            raise validation.refuse(
                "authorization_amount_invalid",
                "authorization_details.authorization_amount : should not exceed plan_max_amount",
            )
        sub = Subscription(
            cf_subscription_id=self.store.next_cf_subscription_id(),
            subscription_id=req.subscription_id,
            session_id=self.store.new_session_id(),
            plan=plan,
            customer=req.customer,
            auth_amount_paise=auth_paise,
            auth_amount_refund=req.auth_amount_refund,
            methods=req.methods,
            meta=req.meta,
            tags=req.tags,
            note=req.note,
            expiry_time=expiry,
            first_charge_time=req.first_charge_time,
            link_expires_at=link_expiry,
            created_at=now,
        )
        self.store.subscriptions[sub.subscription_id] = sub
        self.store.sessions[sub.session_id] = sub.subscription_id
        return sub

    def subscription(self, subscription_id: str) -> Subscription:
        self.tick()
        sub = self.store.subscriptions.get(subscription_id)
        if sub is None:
            raise not_found("subscription_does_not_exist", "subscription does not exist")
        return sub

    def manage(self, subscription_id: str, body: Any) -> Subscription:
        sub = self.subscription(subscription_id)
        req = validation.manage(
            body, subscription_id, ("CANCEL", "PAUSE", "ACTIVATE", "CHANGE_PLAN")
        )
        if req.action == "CHANGE_PLAN":
            raise _not_allowed("CHANGE_PLAN is not supported by this sandbox")
        if req.action == "CANCEL":
            if sub.status in ENDED:
                raise _not_allowed(f"subscription is {sub.status}; it cannot be cancelled")
            self._set_status(sub, CANCELLED)
            for payment in self._open_charges(sub):
                self._end(payment, P_CANCELLED, "SUBSCRIPTION_CANCELLED")
                self._publish_payment("SUBSCRIPTION_PAYMENT_CANCELLED", payment, sub)
        elif req.action == "PAUSE":
            if sub.plan.plan_type == "ON_DEMAND":
                raise _not_allowed("PAUSE is not supported for ON_DEMAND plans")
            if sub.status != ACTIVE:
                raise _not_allowed(f"subscription is {sub.status}; only ACTIVE can be paused")
            self._set_status(sub, PAUSED)
        else:  # ACTIVATE
            if sub.status not in (PAUSED, ON_HOLD):
                raise _not_allowed(
                    f"subscription is {sub.status}; only PAUSED or ON_HOLD can be activated"
                )
            self._set_status(sub, ACTIVE)
        return sub

    # Hosted authorisation ---------------------------------------------------------------

    def for_session(self, session_id: object) -> Subscription:
        sub_id = self.store.sessions.get(session_id) if isinstance(session_id, str) else None
        if sub_id is None:
            raise bad_request(
                "subscription_session_id_invalid",
                "subscription_session_id is not present or is invalid",
            )
        return self.subscription(sub_id)

    @staticmethod
    def offered(sub: Subscription) -> list[str]:
        """What the hosted page offers: UPI AutoPay and cards (eNACH/pNACH are not modelled)."""
        return [m for m in ("upi", "card") if m in sub.methods]

    def authorize(
        self, sub: Subscription, method: str, outcome: str, payment_id: str | None = None
    ) -> SubsPayment:
        """The payer on the hosted page: `approve`, `decline` or `drop` with `method`."""
        if sub.status != INITIALIZED:
            raise _not_allowed(f"subscription is {sub.status}; nothing to authorise")
        if method not in self.offered(sub):
            raise bad_request(
                "authorization_payment_info_mismatch",
                f"payment_method : {method} is not allowed for this subscription",
            )
        payment = self._auth_payment(sub, payment_id, method)
        payment.method = method
        if outcome == "drop":
            return payment  # the link stays open until it expires
        now = self.clock.now()
        if outcome == "approve":
            self._end(payment, P_SUCCESS, None)
            sub.auth_status = "ACTIVE"
            sub.auth_method = method
            sub.authorized_at = now
            sub.auth_payment_id = payment.payment_id
            if method == "upi":
                sub.payer_vpa = UPI_VPA
                sub.auth_reference = f"{secrets.token_hex(16)}@okaxis"  # a UMN
            else:
                sub.auth_reference = "SI" + _digits(16)  # an enrolment id
            self._publish_payment("SUBSCRIPTION_AUTH_STATUS", payment, sub)
            self._set_status(sub, ACTIVE)
        else:
            self._end(payment, P_FAILED, "AUTHORIZATION_DECLINED")
            sub.auth_status = "FAILED"
            sub.auth_payment_id = payment.payment_id
            self._publish_payment("SUBSCRIPTION_AUTH_STATUS", payment, sub)
        return payment

    def _auth_payment(self, sub: Subscription, payment_id: str | None, method: str) -> SubsPayment:
        if payment_id is not None:
            found = self.store.payments.get(payment_id)
            if found and found.subscription_id == sub.subscription_id and found.status in OPEN:
                return found
        for payment in self.store.subscription_payments(sub.subscription_id):
            if payment.payment_type == "AUTH" and payment.status in OPEN:
                return payment
        payment = self._new_payment(sub, "auth_" + secrets.token_hex(8), "AUTH", "")
        payment.amount_paise = sub.auth_amount_paise
        payment.status = P_PENDING
        payment.method = method
        sub.auth_payment_id = payment.payment_id
        return payment

    # /subscriptions/pay -----------------------------------------------------------------

    def pay(self, body: Any) -> tuple[SubsPayment, Subscription]:
        req = validation.new_payment(body)
        sub = self.subscription(req.subscription_id)
        fingerprint = hashlib.sha256(
            dumps(
                [
                    req.subscription_id,
                    req.payment_type,
                    req.amount_paise,
                    str(req.schedule_date),
                    req.remarks,
                    req.session_id,
                    req.method,
                ]
            )
        ).hexdigest()
        existing = self.store.payments.get(req.payment_id)
        if existing is not None:
            if existing.fingerprint == fingerprint:
                return existing, sub  # a retry: the payment it already made
            raise CashfreeError(
                409, "payment_id_already_exists", "payment with the same payment_id exists"
            )
        if req.payment_type == "AUTH":
            return self._start_auth(sub, req, fingerprint), sub
        return self._charge(sub, req, fingerprint), sub

    def _start_auth(
        self, sub: Subscription, req: validation.NewPayment, fingerprint: str
    ) -> SubsPayment:
        if req.session_id != sub.session_id:
            raise bad_request(
                "subscription_session_id_invalid",
                "subscription_session_id : does not belong to this subscription",
            )
        if sub.status != INITIALIZED:
            raise _not_allowed(f"subscription is {sub.status}; nothing to authorise")
        if req.method is not None and req.method not in self.offered(sub):
            raise bad_request(
                "authorization_payment_info_mismatch",
                f"payment_method : {req.method} is not allowed for this subscription",
            )
        amount = sub.auth_amount_paise if req.amount_paise is None else req.amount_paise
        if amount != sub.auth_amount_paise:
            raise bad_request(
                "authorization_payment_info_mismatch",
                "payment_amount : should equal the subscription's authorization_amount",
            )
        payment = self._new_payment(sub, req.payment_id, "AUTH", fingerprint)
        payment.amount_paise = amount
        payment.status = P_PENDING
        payment.method = req.method
        payment.remarks = req.remarks
        sub.auth_payment_id = payment.payment_id
        return payment

    def _charge(
        self, sub: Subscription, req: validation.NewPayment, fingerprint: str
    ) -> SubsPayment:
        assert req.amount_paise is not None
        if sub.status != ACTIVE:
            raise _not_allowed(
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

    def _new_payment(
        self, sub: Subscription, payment_id: str, kind: str, fingerprint: str
    ) -> SubsPayment:
        payment = SubsPayment(
            cf_payment_id=self.store.next_cf_payment_id(),
            payment_id=payment_id,
            subscription_id=sub.subscription_id,
            payment_type=kind,
            amount_paise=0,
            initiated_at=self.clock.now(),
            fingerprint=fingerprint,
        )
        self.store.payments[payment_id] = payment
        return payment

    # Debits -----------------------------------------------------------------------------

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
            payment.cf_txn_id = _digits(10)
            self._publish_payment("SUBSCRIPTION_PAYMENT_SUCCESS", payment, sub)

    def _fail(self, payment: SubsPayment, sub: Subscription, reason: str) -> None:
        self._end(payment, P_FAILED, reason)
        self._publish_payment("SUBSCRIPTION_PAYMENT_FAILED", payment, sub)

    def _end(self, payment: SubsPayment, status: str, reason: str | None) -> None:
        payment.status = status
        payment.failure_reason = reason
        payment.debit_at = None
        payment.completed_at = self.clock.now()

    def _open_charges(self, sub: Subscription) -> list[SubsPayment]:
        return [
            p
            for p in self.store.subscription_payments(sub.subscription_id)
            if p.payment_type == "CHARGE" and p.status in OPEN
        ]

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
            raise _not_allowed("only charges can be managed")
        if req.action == "CANCEL":
            if payment.status not in OPEN:
                raise _not_allowed(f"payment is {payment.status}; it cannot be cancelled")
            self._end(payment, P_CANCELLED, "CANCELLED_BY_MERCHANT")
            self._publish_payment("SUBSCRIPTION_PAYMENT_CANCELLED", payment, sub)
            return payment, sub
        if payment.status != P_FAILED:
            raise _not_allowed(f"payment is {payment.status}; only FAILED can be retried")
        if sub.status != ACTIVE:
            raise _not_allowed(
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

    # The payer and the simulator ---------------------------------------------------------

    def queue_outcome(self, sub: Subscription, outcome: Outcome) -> None:
        sub.outcomes.append(outcome)

    def payer_revoke(self, sub: Subscription) -> None:
        if sub.status in ENDED:
            raise _not_allowed(f"subscription is {sub.status}")
        self._set_status(sub, CUSTOMER_CANCELLED)
        for payment in self._open_charges(sub):
            self._fail(payment, sub, "MANDATE_REVOKED")

    def payer_pause(self, sub: Subscription) -> None:
        if sub.status != ACTIVE:
            raise _not_allowed(f"subscription is {sub.status}; only ACTIVE can be paused")
        self._set_status(sub, CUSTOMER_PAUSED)

    def payer_resume(self, sub: Subscription) -> None:
        if sub.status != CUSTOMER_PAUSED:
            raise _not_allowed(f"subscription is {sub.status}; only CUSTOMER_PAUSED can resume")
        self._set_status(sub, ACTIVE)

    def simulate(self, entity_id: str, status: str, code: str | None) -> None:
        """`POST /pg/simulate` with `SUBS_PAYMENTS` (§12.9): an open authorisation ends now
        (SUCCESS approves with its method, or UPI; FAILED declines; USER_DROPPED fails it);
        an open charge gets the outcome its debit will have when it falls due (PENDING: it
        stays pending)."""
        payment = self.store.payments.get(entity_id)
        if payment is None:
            raise not_found("payment_not_found", "entity_id : no subscription payment with this id")
        if payment.status not in OPEN:
            raise bad_request("payment_already_processed", f"payment is already {payment.status}")
        sub = self.store.subscriptions[payment.subscription_id]
        if payment.payment_type == "AUTH":
            method = payment.method or (self.offered(sub) or ["upi"])[0]
            if status == "SUCCESS":
                self.authorize(sub, method, "approve", payment.payment_id)
            elif status == "FAILED":
                self.authorize(sub, method, "decline", payment.payment_id)
            elif status == "USER_DROPPED":
                self._end(payment, P_FAILED, code or "USER_DROPPED")
                self._publish_payment("SUBSCRIPTION_AUTH_STATUS", payment, sub)
            return
        kinds = {"SUCCESS": "success", "PENDING": "pending"}
        reason = code or ("USER_DROPPED" if status == "USER_DROPPED" else "INSUFFICIENT_FUNDS")
        payment.outcome = Outcome(kinds.get(status, "failure"), reason)
        self.tick()

    # Events -----------------------------------------------------------------------------

    def _set_status(self, sub: Subscription, status: str) -> None:
        if sub.status == status:
            return
        sub.status = status
        if status not in QUIET_STATUSES:
            self._publish_status(sub)

    def _publish_status(self, sub: Subscription) -> None:
        body = entities.status_webhook(sub, self.clock.now())
        self._publish(body, f"{sub.cf_subscription_id}:{sub.status}", sub, sub.cf_subscription_id)

    def _publish_payment(self, event_type: str, payment: SubsPayment, sub: Subscription) -> None:
        body = entities.payment_webhook(event_type, payment, sub, self.clock.now())
        # A PDN sent again for a RETRY is a new event; a duplicate delivery is not.
        material = f"{payment.cf_payment_id}:{payment.pdn_count}"
        self._publish(body, material, sub, payment.cf_payment_id, payment.status)

    def _publish(
        self,
        body: dict[str, Any],
        material: str,
        sub: Subscription,
        entity_id: str,
        status: str = "",
    ) -> None:
        event = Event(
            type=body["type"],
            body=dumps(body),
            idempotency_key=event_key(body["type"], material, status),
            subject_id=sub.subscription_id,
            entity_id=entity_id,
        )
        self.notifier.publish(event, self.settings.webhook_url)


def _not_allowed(message: str, *, code: str = "action_not_allowed") -> CashfreeError:
    return bad_request(code, message)


def _plan(plan_id: str, req: validation.PlanFields) -> Plan:
    return Plan(
        plan_id=plan_id,
        plan_name=req.plan_name,
        plan_type=req.plan_type,
        max_amount_paise=req.max_amount_paise,
        recurring_amount_paise=req.recurring_amount_paise,
        max_cycles=req.max_cycles,
        intervals=req.intervals,
        interval_type=req.interval_type,
        note=req.note,
        currency=req.currency,
    )
