"""What Cashfree Subscriptions does in the sandbox (cashfree.md §12, §15), on the shared clock:
plans, subscriptions, their authorisation, the merchant's and the payer's actions on them, and
`/pg/simulate`. Charges are `charges.py`; the state and the webhooks `core.py`.

Subscription: INITIALIZED -> ACTIVE (payer approves on the hosted page, UPI AutoPay or card) |
LINK_EXPIRED (not approved before the link expires; a decline leaves it INITIALIZED to try
again). ACTIVE <-> PAUSED (merchant, PERIODIC only), ACTIVE <-> CUSTOMER_PAUSED (payer),
ACTIVE -> ON_HOLD (a card charge failed) -> ACTIVE (merchant ACTIVATE), any live status ->
CANCELLED (merchant) | CUSTOMER_CANCELLED (payer revokes).

Charge: raised INITIALIZED with the pre-debit notification sent at once
(`SUBSCRIPTION_PAYMENT_NOTIFICATION_INITIATED`); debited no earlier than `pdn_lead_s` after it
nor before the schedule date; then SUCCESS, or for UPI a failed attempt is retried hourly up
to three times (PENDING meanwhile) before FAILED; a card charge fails at once and puts the
mandate ON_HOLD. Refunds of charges are `refunds.py`. Due steps run on `tick()`: every
`subscription_tick_s`, on every subscriptions call, and when `/_sandbox/clock` moves the clock.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request, not_found
from commdesk_billing.gateway.sandbox.subscriptions import validation
from commdesk_billing.gateway.sandbox.subscriptions.charges import Charges, digits
from commdesk_billing.gateway.sandbox.subscriptions.core import not_allowed
from commdesk_billing.gateway.sandbox.subscriptions.refunds import Refunds
from commdesk_billing.gateway.sandbox.subscriptions.store import (
    ACTIVE,
    CANCELLED,
    CUSTOMER_PAUSED,
    ENDED,
    INITIALIZED,
    LINK_EXPIRED,
    ON_HOLD,
    OPEN,
    P_CANCELLED,
    P_FAILED,
    P_PENDING,
    P_SUCCESS,
    PAUSED,
    Outcome,
    Plan,
    Subscription,
    SubsPayment,
)
from commdesk_billing.gateway.sandbox.wire import dumps

QUIET_STATUSES = frozenset({PAUSED, INITIALIZED})
UPI_VPA = "sandbox.payer@okaxis"


class SubscriptionSandbox(Refunds, Charges):
    # Clock ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Everything due by now: links expire, debits happen (and UPI retries), refunds
        end."""
        now = self.clock.now()
        for sub in list(self.store.subscriptions.values()):
            if sub.status == INITIALIZED and sub.link_expires_at <= now:
                self._expire_link(sub)
        self._due_charges(now)
        self._due_refunds(now)

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

    def manage(self, subscription_id: str, body: Any) -> Subscription:
        sub = self.subscription(subscription_id)
        req = validation.manage(
            body, subscription_id, ("CANCEL", "PAUSE", "ACTIVATE", "CHANGE_PLAN")
        )
        if req.action == "CHANGE_PLAN":
            raise not_allowed("CHANGE_PLAN is not supported by this sandbox")
        if req.action == "CANCEL":
            if sub.status in ENDED:
                raise not_allowed(f"subscription is {sub.status}; it cannot be cancelled")
            self._set_status(sub, CANCELLED)
            for payment in self._open_charges(sub):
                self._end(payment, P_CANCELLED, "SUBSCRIPTION_CANCELLED")
                self._publish_payment("SUBSCRIPTION_PAYMENT_CANCELLED", payment, sub)
        elif req.action == "PAUSE":
            if sub.plan.plan_type == "ON_DEMAND":
                raise not_allowed("PAUSE is not supported for ON_DEMAND plans")
            if sub.status != ACTIVE:
                raise not_allowed(f"subscription is {sub.status}; only ACTIVE can be paused")
            self._set_status(sub, PAUSED)
        else:  # ACTIVATE
            if sub.status not in (PAUSED, ON_HOLD):
                raise not_allowed(
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
            raise not_allowed(f"subscription is {sub.status}; nothing to authorise")
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
                sub.auth_reference = "SI" + digits(16)  # an enrolment id
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
        if req.payment_type == "CHARGE" and sub.refusals:
            code, message = sub.refusals.pop(0)
            raise CashfreeError(400, code, message)
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
            raise not_allowed(f"subscription is {sub.status}; nothing to authorise")
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

    # The payer and the simulator ---------------------------------------------------------

    def payer_pause(self, sub: Subscription) -> None:
        if sub.status != ACTIVE:
            raise not_allowed(f"subscription is {sub.status}; only ACTIVE can be paused")
        self._set_status(sub, CUSTOMER_PAUSED)

    def payer_resume(self, sub: Subscription) -> None:
        if sub.status != CUSTOMER_PAUSED:
            raise not_allowed(f"subscription is {sub.status}; only CUSTOMER_PAUSED can resume")
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
