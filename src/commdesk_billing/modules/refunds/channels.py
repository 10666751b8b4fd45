"""Where Cashfree is asked about a refund: the PG order refund API (`/orders/{id}/refunds`), or,
for a payment debited on a mandate, Cashfree Subscriptions' refund API
(`/subscriptions/{id}/refunds`, cashfree.md §12.5) under the charge's `payment_id` (our
`order_id`). The rest of the money path is the same whichever answered: a Subscriptions
answer is read into the PG `Refund` model, its statuses in PG's words (INITIALIZED and
INITIATED are PENDING; CANCEL is CANCELLED; FAILED stays FAILED), what `processing` acts on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from commdesk_billing.gateway.amounts import to_rupees
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.models import Refund as GatewayRefund
from commdesk_billing.gateway.split_models import RefundShare
from commdesk_billing.gateway.subscription_models import (
    SubscriptionRefund,
    SubscriptionRefundStatus,
)
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.refunds.model import Refund

_AS_PG = {
    SubscriptionRefundStatus.INITIALIZED: "PENDING",
    SubscriptionRefundStatus.INITIATED: "PENDING",
    SubscriptionRefundStatus.CANCEL: "CANCELLED",
}


@dataclass(frozen=True)
class Gateways:
    """The clients a refund may need. `subs` is None only where no mandate payment is ever
    refunded (a test's processor); a mandate refund then fails loudly, never goes to PG."""

    pg: CashfreeClient
    subs: SubscriptionsClient | None = None

    def for_mandate(self) -> SubscriptionsClient:
        if self.subs is None:
            raise RuntimeError("a mandate payment's refund needs the Subscriptions client")
        return self.subs

    async def aclose(self) -> None:
        await self.pg.aclose()
        if self.subs is not None:
            await self.subs.aclose()


def _subscription_of(payment: Payment) -> str:
    if payment.subscription_id is None:
        raise RuntimeError(f"payment {payment.id} is on a mandate but names no subscription")
    return payment.subscription_id


def as_pg(answer: SubscriptionRefund) -> GatewayRefund:
    """A Subscriptions refund in the PG model's terms (see the module's docstring). The
    charge it refunds (`payment_id`, our `order_id`) is kept as the PG refund's `order_id`:
    Cashfree keeps refund ids unique per subscription, not per charge, so a refund under our
    id may be of another charge of the mandate, and `processing` must see that."""
    status = _AS_PG.get(answer.refund_status, answer.refund_status)
    return GatewayRefund.model_validate(
        {
            "refund_id": answer.refund_id,
            "order_id": answer.payment_id,
            "cf_refund_id": answer.cf_refund_id,
            "cf_payment_id": answer.cf_payment_id,
            "refund_amount": to_rupees(answer.refund_amount_paise),
            "refund_status": status,
            "refund_note": answer.refund_note,
        }
    )


async def create(
    gw: Gateways,
    refund: Refund,
    payment: Payment,
    splits: Sequence[RefundShare] | None,
) -> GatewayRefund:
    if payment.on_mandate:
        answer = await gw.for_mandate().create_refund(
            subscription_id=_subscription_of(payment),
            payment_id=refund.order_id,
            refund_id=refund.refund_ref,
            amount_paise=refund.amount_paise,
            note=refund.reason,
        )
        return as_pg(answer)
    return await gw.pg.create_refund(
        order_id=refund.order_id,
        refund_id=refund.refund_ref,
        amount_paise=refund.amount_paise,
        note=refund.reason,
        refund_splits=splits,
    )


async def fetch(gw: Gateways, refund: Refund, payment: Payment) -> GatewayRefund:
    if payment.on_mandate:
        answer = await gw.for_mandate().fetch_refund(_subscription_of(payment), refund.refund_ref)
        return as_pg(answer)
    return await gw.pg.fetch_refund(refund.order_id, refund.refund_ref)
