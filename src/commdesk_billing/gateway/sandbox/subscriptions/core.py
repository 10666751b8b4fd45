"""What every part of the subscriptions sandbox shares: the state, the clock, the settings, and
the webhooks a status or payment change sends (cashfree.md §12.8)."""

from __future__ import annotations

from typing import Any

from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request, not_found
from commdesk_billing.gateway.sandbox.subscriptions import entities
from commdesk_billing.gateway.sandbox.subscriptions.settings import SubscriptionSettings
from commdesk_billing.gateway.sandbox.subscriptions.store import (
    INITIALIZED,
    OPEN,
    P_FAILED,
    PAUSED,
    Subscription,
    SubsPayment,
    SubsStore,
)
from commdesk_billing.gateway.sandbox.webhooks import Event, Notifier, event_key
from commdesk_billing.gateway.sandbox.wire import Clock, dumps

# Cashfree's status webhook fires on every status but a merchant's PAUSE (§12.8).
QUIET_STATUSES = frozenset({PAUSED, INITIALIZED})


class Core:
    def __init__(self, settings: SubscriptionSettings, *, clock: Clock, notifier: Notifier) -> None:
        self.settings = settings
        self.clock = clock
        self.notifier = notifier
        self.store = SubsStore()

    def tick(self) -> None:
        """Everything due by now (`service.SubscriptionSandbox`)."""
        raise NotImplementedError

    def subscription(self, subscription_id: str) -> Subscription:
        self.tick()
        sub = self.store.subscriptions.get(subscription_id)
        if sub is None:
            raise not_found("subscription_does_not_exist", "subscription does not exist")
        return sub

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

    def _end(self, payment: SubsPayment, status: str, reason: str | None) -> None:
        payment.status = status
        payment.failure_reason = reason
        payment.debit_at = None
        payment.completed_at = self.clock.now()

    def _fail(self, payment: SubsPayment, sub: Subscription, reason: str) -> None:
        self._end(payment, P_FAILED, reason)
        self._publish_payment("SUBSCRIPTION_PAYMENT_FAILED", payment, sub)

    def _open_charges(self, sub: Subscription) -> list[SubsPayment]:
        return [
            p
            for p in self.store.subscription_payments(sub.subscription_id)
            if p.payment_type == "CHARGE" and p.status in OPEN
        ]

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


def not_allowed(message: str, *, code: str = "action_not_allowed") -> CashfreeError:
    return bad_request(code, message)
