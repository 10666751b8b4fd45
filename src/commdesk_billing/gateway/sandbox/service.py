"""What the sandbox does: the order, payment and refund state machines, and the events they send
(Payouts' own state machine lives in `payouts/service.py`).

Order: ACTIVE -> PAID (first SUCCESS payment) | EXPIRED (past `order_expiry_time`) |
TERMINATED (terminate with no open payment) | TERMINATION_REQUESTED -> TERMINATED or PAID (an
open payment decides). Payment: NOT_ATTEMPTED/PENDING -> SUCCESS | FAILED | USER_DROPPED.
Refund: PENDING -> SUCCESS | CANCELLED, or stays PENDING when its note says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from commdesk_billing.gateway.sandbox import entities, validation
from commdesk_billing.gateway.sandbox.background import Background
from commdesk_billing.gateway.sandbox.config import SandboxConfig
from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request, not_found
from commdesk_billing.gateway.sandbox.instruments import EXPIRED_COLLECT, Attempt, resolve
from commdesk_billing.gateway.sandbox.payouts.service import PayoutSandbox
from commdesk_billing.gateway.sandbox.split import entities as split_entities
from commdesk_billing.gateway.sandbox.split.service import SplitSandbox
from commdesk_billing.gateway.sandbox.store import (
    OPEN_PAYMENT,
    Failure,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Simulation,
    Store,
)
from commdesk_billing.gateway.sandbox.subscriptions.service import SubscriptionSandbox
from commdesk_billing.gateway.sandbox.subscriptions.settings import SubscriptionSettings
from commdesk_billing.gateway.sandbox.webhooks import Event, Notifier, event_key
from commdesk_billing.gateway.sandbox.wire import Clock, dumps, ist_text

SUCCESS_MESSAGE = "00::Transaction success"


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


@dataclass(frozen=True, slots=True)
class Started:
    order: Order
    payment: Payment
    attempt: Attempt


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.faults = config.faults()
        self.rng = random.Random(config.seed)  # fault dice, not secrets
        self.clock = Clock()
        self.store = Store()
        self.background = Background()
        self.notifier = Notifier(
            secret=config.client_secret,
            default_url=config.webhook_url,
            retry_schedule_s=config.webhook_retry_schedule_s,
            timeout_s=config.webhook_timeout_s,
            faults=self.faults,
            rng=self.rng,
            background=self.background,
        )
        # Pending settlement timers per payment, so /pg/simulate can overrule them.
        self._settle_timers: dict[str, asyncio.Task[None]] = {}
        # Easy Split and settlement reports: PG's app, its notifier (and so its faults).
        self.split = SplitSandbox(
            config.split_settings(),
            clock=self.clock,
            notifier=self.notifier,
            merchant_id=config.client_id,
            pg=self.store,
        )
        # Payouts V2 and verification: another Cashfree app on the same clock.
        self.payouts = PayoutSandbox(config, clock=self.clock, background=self.background)
        # Subscriptions: PG's app (its secret signs their webhooks, §12.8) and faults, but
        # their own webhook endpoint and delivery log.
        self.subscription_notifier = Notifier(
            secret=config.client_secret,
            default_url=None,
            retry_schedule_s=config.webhook_retry_schedule_s,
            timeout_s=config.webhook_timeout_s,
            faults=self.faults,
            rng=self.rng,
            background=self.background,
        )
        self.subscriptions = SubscriptionSandbox(
            SubscriptionSettings.from_config(config),
            clock=self.clock,
            notifier=self.subscription_notifier,
        )

    async def start(self) -> None:
        await self.notifier.start()
        await self.subscription_notifier.start()
        await self.payouts.start()
        self.background.spawn(self._sweep_forever())
        self.background.spawn(self._split_forever())
        self.background.spawn(self._subscriptions_forever())

    async def close(self) -> None:
        await self.background.close()
        await self.notifier.close()
        await self.subscription_notifier.close()
        await self.payouts.close()

    # Orders ---------------------------------------------------------------------------

    def create_order(self, body: Any) -> Order:
        now = self.clock.now()
        req = validation.new_order(body, now)
        order_id = req.order_id or self.store.generated_id("order")
        if order_id in self.store.orders:
            raise CashfreeError(
                409, "order_already_exists", "order with same id is already present"
            )
        splits = self.split.check_splits(req.splits, req.amount_paise)
        order = Order(
            cf_order_id=self.store.next_cf_order_id(),
            order_id=order_id,
            amount_paise=req.amount_paise,
            currency=req.currency,
            customer=req.customer,
            meta=req.meta,
            expiry=req.expiry or now + timedelta(seconds=self.config.default_order_ttl_s),
            note=req.note,
            tags=req.tags,
            splits=[split_entities.split_entity(s) for s in splits],
            cart_details=req.cart_details,
            created_at=now,
            payment_session_id=self.store.new_session_id(),
        )
        self.store.orders[order_id] = order
        if splits:
            self.split.store.order_splits[order_id] = splits
        self.store.sessions[order.payment_session_id] = order_id
        return order

    def order(self, order_id: str) -> Order:
        order = self.store.orders.get(order_id)
        if order is None:
            raise not_found("order_not_found", "order not found")
        self._expire_if_due(order)
        return order

    def _expire_if_due(self, order: Order) -> None:
        # An order with a payment still open is left alone: that attempt started in time.
        if (
            order.status == OrderStatus.ACTIVE
            and self.clock.now() >= order.expiry
            and not self._open_payments(order)
        ):
            order.status = OrderStatus.EXPIRED

    def _open_payments(self, order: Order) -> list[Payment]:
        return [p for p in self.store.order_payments(order) if p.status in OPEN_PAYMENT]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.expiry_sweep_s)
            for order in list(self.store.orders.values()):
                self._expire_if_due(order)

    async def _split_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.split_tick_s)
            self.split.tick()

    async def _subscriptions_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.subscription_tick_s)
            self.subscriptions.tick()

    def terminate(self, order_id: str, body: Any) -> Order:
        obj = validation.body_object(body)
        if obj.get("order_status") != "TERMINATED":
            raise bad_request("order_status_invalid", "order_status : only TERMINATED is allowed")
        order = self.order(order_id)
        if order.status == OrderStatus.PAID:
            raise bad_request(
                "order_already_paid", "order is already paid and cannot be terminated"
            )
        if order.status == OrderStatus.EXPIRED:
            raise bad_request("order_already_expired", "order has expired and cannot be terminated")
        if order.status == OrderStatus.ACTIVE:
            # An open attempt may still succeed: Cashfree's "might not be terminated" case.
            pending = bool(self._open_payments(order))
            order.status = OrderStatus.TERMINATION_REQUESTED if pending else OrderStatus.TERMINATED
        return order  # TERMINATED / TERMINATION_REQUESTED again: unchanged, 200

    # Payments -------------------------------------------------------------------------

    def order_for_session(self, payment_session_id: object) -> Order:
        order_id = (
            self.store.sessions.get(payment_session_id)
            if isinstance(payment_session_id, str)
            else None
        )
        if order_id is None:
            raise bad_request(
                "payment_session_id_invalid", "payment_session_id is not present or is invalid"
            )
        return self.order(order_id)

    def pay(
        self,
        body: Any,
        *,
        forced: tuple[PaymentStatus, Failure | None] | None = None,
        settle_now: bool = False,
    ) -> Started:
        """Order Pay. `forced`/`settle_now` are for the hosted checkout, where the person picks
        the outcome and has already been through the "bank page"."""
        obj = validation.body_object(body)
        order = self.order_for_session(obj.get("payment_session_id"))
        refusal = {
            OrderStatus.PAID: ("order_already_paid", "order is already paid"),
            OrderStatus.EXPIRED: ("order_expired", "order has expired"),
            OrderStatus.TERMINATED: ("order_terminated", "order has been terminated"),
            OrderStatus.TERMINATION_REQUESTED: ("order_terminated", "order is being terminated"),
        }.get(order.status)
        if refusal is not None:
            raise bad_request(*refusal)
        attempt = resolve(obj.get("payment_method"))
        payment = Payment(
            cf_payment_id=self.store.next_cf_payment_id(),
            order_id=order.order_id,
            amount_paise=order.amount_paise,
            currency=order.currency,
            group=attempt.group,
            method=attempt.method,
            channel=attempt.channel,
            started_at=self.clock.now(),
            status=attempt.start,
            message="Transaction pending"
            if attempt.start == PaymentStatus.PENDING
            else "Payment not attempted yet",
        )
        self.store.payments[payment.cf_payment_id] = payment
        order.payment_ids.append(payment.cf_payment_id)
        outcome = forced or attempt.outcome
        if outcome is not None and settle_now:
            self.settle(payment, *outcome)
        elif outcome is not None:
            self._settle_later(payment, self.config.settle_delay_s, outcome)
        elif attempt.channel == "collect":
            minutes = obj["payment_method"]["upi"].get("upi_expiry_minutes") or 5
            minutes = min(max(int(minutes), 5), 15) if isinstance(minutes, int) else 5
            wait = minutes * self.config.upi_minute_s
            self._settle_later(payment, wait, (PaymentStatus.FAILED, EXPIRED_COLLECT))
        return Started(order, payment, attempt)

    def _settle_later(
        self, payment: Payment, delay_s: float, outcome: tuple[PaymentStatus, Failure | None]
    ) -> None:
        def fire() -> None:
            self._settle_timers.pop(payment.cf_payment_id, None)
            if payment.status in OPEN_PAYMENT:
                self.settle(payment, *outcome)

        self._settle_timers[payment.cf_payment_id] = self.background.later(delay_s, fire)

    def settle(self, payment: Payment, status: PaymentStatus, failure: Failure | None) -> None:
        """Move an open payment to `status`; a terminal one sends its webhook."""
        order = self.store.orders[payment.order_id]
        payment.status = status
        if status == PaymentStatus.PENDING:
            payment.message = "Transaction pending"
            return
        payment.completed_at = self.clock.now()
        payment.failure = failure
        if status == PaymentStatus.SUCCESS:
            payment.message = SUCCESS_MESSAGE
            payment.bank_reference = _digits(12)
            payment.failure = None
            # First success pays the order, even one that started before the order expired
            # or before a termination was requested: the customer's money has moved.
            paid_now = order.status in (
                OrderStatus.ACTIVE,
                OrderStatus.EXPIRED,
                OrderStatus.TERMINATION_REQUESTED,
            )
            if paid_now:
                order.status = OrderStatus.PAID
            # Every captured payment is settled to the merchant (a second success on a paid
            # order too); the vendors' shares come once, with the order's payment.
            self.split.on_captured(order, payment, split=paid_now)
        else:
            payment.message = failure.message if failure else status.value
            payment.bank_reference = "NA"
            if order.status == OrderStatus.TERMINATION_REQUESTED and not self._open_payments(order):
                order.status = OrderStatus.TERMINATED
        self._publish_payment(order, payment)

    def _publish_payment(self, order: Order, payment: Payment) -> None:
        body = entities.payment_webhook(order, payment, ist_text(self.clock.now()))
        event = Event(
            type=body["type"],
            body=dumps(body),
            idempotency_key=event_key(body["type"], payment.cf_payment_id, payment.status),
            subject_id=order.order_id,
            entity_id=payment.cf_payment_id,
        )
        self.notifier.publish(event, order.meta.get("notify_url"))

    def payment(self, order_id: str, cf_payment_id: str) -> tuple[Order, Payment]:
        order = self.order(order_id)
        payment = self.store.payments.get(cf_payment_id)
        if payment is None or payment.order_id != order.order_id:
            raise not_found("payment_not_found", "payment not found for this order")
        return order, payment

    def simulate(self, body: Any) -> Simulation:
        req = validation.new_simulation(body)
        payment = self.store.payments.get(req.entity_id)
        if payment is None:
            raise not_found("payment_not_found", "entity_id : no payment with this cf_payment_id")
        if payment.status not in OPEN_PAYMENT:
            raise bad_request(
                "payment_already_processed", f"payment is already {payment.status.value}"
            )
        timer = self._settle_timers.pop(payment.cf_payment_id, None)
        if timer is not None:
            timer.cancel()
        status = PaymentStatus(req.payment_status)
        failure = None
        if status in (PaymentStatus.FAILED, PaymentStatus.USER_DROPPED):
            failure = _simulated_failure(status, req.payment_error_code)
        self.settle(payment, status, failure)
        sim = Simulation(
            simulation_id=self.store.next_simulation_id(),
            entity="PAYMENTS",
            entity_id=req.entity_id,
            payment_status=req.payment_status,
            payment_error_code=req.payment_error_code,
        )
        self.store.simulations[sim.simulation_id] = sim
        return sim

    # Refunds --------------------------------------------------------------------------

    def create_refund(self, order_id: str, body: Any) -> Refund:
        order = self.order(order_id)
        req = validation.new_refund(body)
        fingerprint = hashlib.sha256(
            dumps([req.amount_paise, req.note, req.speed, req.splits])
        ).hexdigest()
        if req.refund_id is not None:
            existing = self.store.refunds.get((order.order_id, req.refund_id))
            if existing is not None:
                if existing.request_fingerprint == fingerprint:
                    return existing  # a retry: the refund it already made
                raise bad_request(
                    "refund_id_already_exists",
                    "refund with the same refund_id but different details already exists",
                )
        paid = next(
            (p for p in self.store.order_payments(order) if p.status == PaymentStatus.SUCCESS),
            None,
        )
        if order.status != OrderStatus.PAID or paid is None:
            raise CashfreeError(409, "refund_not_allowed", "order is not paid; nothing to refund")
        live = [r for r in self.store.order_refunds(order) if r.status != RefundStatus.CANCELLED]
        refunded = sum(r.amount_paise for r in live)
        if req.amount_paise > paid.amount_paise - refunded:
            raise bad_request(
                "refund_amount_invalid",
                "refund_amount : more than the paid amount not yet refunded",
            )
        splits, explicit = self.split.refund_plan(order, req.amount_paise, req.splits, live)
        refund = Refund(
            cf_refund_id=self.store.next_cf_refund_id(),
            cf_payment_id=paid.cf_payment_id,
            order_id=order.order_id,
            refund_id=req.refund_id or self.store.generated_id("refund"),
            amount_paise=req.amount_paise,
            currency=order.currency,
            note=req.note,
            speed=req.speed,
            created_at=self.clock.now(),
            request_fingerprint=fingerprint,
            splits=splits,
            explicit_splits=explicit,
        )
        self.store.refunds[(order.order_id, refund.refund_id)] = refund
        order.refund_ids.append(refund.refund_id)
        # Sandbox trick (cashfree.md §4.1): the note forces the outcome. PENDING and ACTIVE
        # leave it pending for good; FAILED ends CANCELLED, the failure status the SDK accepts.
        if req.note not in ("PENDING", "ACTIVE"):
            final = RefundStatus.CANCELLED if req.note == "FAILED" else RefundStatus.SUCCESS
            self.background.later(
                self.config.refund_delay_s, lambda: self._finish_refund(refund, final)
            )
        return refund

    def _finish_refund(self, refund: Refund, status: RefundStatus) -> None:
        refund.status = status
        refund.processed_at = self.clock.now()
        if status == RefundStatus.SUCCESS:
            refund.arn = _digits(12)
            refund.description = "Refund processed successfully"
            self.split.on_refunded(refund)
        else:
            refund.description = "Refund could not be processed by the bank"
        body = entities.refund_webhook(refund, ist_text(self.clock.now()))
        event = Event(
            type=body["type"],
            body=dumps(body),
            idempotency_key=event_key(body["type"], refund.cf_refund_id, status),
            subject_id=refund.order_id,
            entity_id=refund.cf_refund_id,
        )
        self.notifier.publish(event, self.store.orders[refund.order_id].meta.get("notify_url"))

    def refund(self, order_id: str, refund_id: str) -> Refund:
        order = self.order(order_id)
        refund = self.store.refunds.get((order.order_id, refund_id))
        if refund is None:
            raise not_found("refund_not_found", "refund not found for this order")
        return refund


def _simulated_failure(status: PaymentStatus, code: str | None) -> Failure:
    if status == PaymentStatus.USER_DROPPED:
        return Failure(
            code or "USER_DROPPED",
            "user dropped and did not complete the payment",
            "user_dropped",
            "customer",
            "User dropped and did not complete the payment",
        )
    return Failure(
        code or "TRANSACTION_DECLINED",
        "simulated failure",
        "bank_rejected",
        "bank",
        "01::REJECTED",
    )
