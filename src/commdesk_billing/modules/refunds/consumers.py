"""`refund.processing`: create the refund at Cashfree, or ask what became of it."""

from __future__ import annotations

import uuid
from typing import Literal

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import NotFound
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.refunds import processing
from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.modules.refunds.channels import Gateways
from commdesk_billing.modules.refunds.model import RefundStatus
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError
from commdesk_billing.security.text import StrictInput

log = structlog.get_logger(__name__)


class RefundPayload(StrictInput):
    refund_id: uuid.UUID
    source: Literal["request", "webhook", "sync", "manual"]
    webhook_id: uuid.UUID | None = None


class RefundProcessing:
    """A one-phase handler on purpose (not TwoPhase): `service.process` keeps the refund's
    row locked across the Cashfree call, see there why. A 429 is raised at once by the
    client (it does not sleep on it, so the row is not held while Cashfree's window runs
    out): the transaction rolls back and the message takes the retry ladder."""

    def __init__(self, client: CashfreeClient, subs: SubscriptionsClient | None = None) -> None:
        # `subs`: Cashfree Subscriptions, where a mandate debit's refund is made.
        self.client = Gateways(client, subs)

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        await self.settle(conn, envelope)

    async def settle(self, conn: AsyncConnection, envelope: Envelope) -> RefundStatus:
        """Create or look up the refund at Cashfree and apply the answer; its status after."""
        try:
            p = RefundPayload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise PermanentError(f"refund.processing payload: {exc.errors()[:3]}") from exc
        try:
            status = await processing.process(conn, self.client, p.refund_id, source=p.source)
        except NotFound as exc:
            raise PermanentError(str(exc)) from exc
        return status

    async def aclose(self) -> None:
        await self.client.aclose()


class SubscriptionRefundPayload(StrictInput):
    refund_ref: str
    payment_id: uuid.UUID


class SubscriptionRefundWebhook:
    """`refund.subscription_webhook`: Cashfree Subscriptions said a refund of a charge on a
    mandate moved (`SUBSCRIPTION_REFUND_STATUS`, stored by the mandates' receiver, which
    knows our refund only by the id Cashfree echoes). A refund of ours of that very payment
    is looked up at Cashfree and settled; anything else is dropped (logged)."""

    def __init__(self, processing: RefundProcessing) -> None:
        self.processing = processing

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        try:
            p = SubscriptionRefundPayload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise PermanentError(f"{envelope.type} payload: {exc.errors()[:3]}") from exc
        refund = await repo.by_ref(conn, p.refund_ref)
        if refund is None or refund.payment_id != p.payment_id:
            log.warning("refund.subscription_webhook.unknown", payment_id=str(p.payment_id))
            return
        await processing.process(conn, self.processing.client, refund.id, source="webhook")

    async def aclose(self) -> None:
        await self.processing.aclose()
