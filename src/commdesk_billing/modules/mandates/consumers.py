"""Queue handlers (on `payment.processing`): `mandate.refresh` (ask Cashfree about a mandate's
subscription, apply it) and `mandate.charge.webhook` (a subscription payment webhook about one
of our charges: the payments consumer asks the subscription payment API and moves the charge;
then the webhook row records what became of it). Dependencies one way: mandates → payments."""

from __future__ import annotations

import uuid

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.gateway.errors import CashfreeRejected
from commdesk_billing.gateway.subscription_models import Subscription
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import repository as repo
from commdesk_billing.modules.mandates import service, status
from commdesk_billing.modules.payments.consumers import PaymentProcessing
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError, TwoPhase
from commdesk_billing.security.text import StrictInput


class RefreshPayload(StrictInput):
    mandate_id: uuid.UUID
    # Send the member's CANCEL first (they revoked it here; Cashfree may still hold it live).
    cancel: bool = False
    webhook_id: uuid.UUID | None = None


class _FromWebhook(StrictInput, extra="ignore"):
    webhook_id: uuid.UUID


def _refresh_payload(envelope: Envelope) -> RefreshPayload:
    try:
        return RefreshPayload.model_validate(envelope.payload)
    except ValidationError as exc:
        raise PermanentError(f"mandate.refresh payload: {exc.errors()[:3]}") from exc


class MandateRefresh(TwoPhase):
    """Fetch the mandate's subscription from Cashfree (sending a member's CANCEL first when
    Cashfree may still hold it live), then apply it in the consumer's transaction."""

    def __init__(self, client: SubscriptionsClient) -> None:
        self.client = client

    async def fetch(self, envelope: Envelope) -> object:
        p = _refresh_payload(envelope)
        try:
            # The subscription id derives from the mandate's: no read of ours before asking.
            return await status.fetch_subscription(
                self.client, service.subscription_id_for(p.mandate_id), cancel=p.cancel
            )
        except CashfreeRejected as exc:
            raise PermanentError(f"cashfree refused the lookup: {exc}") from exc

    async def apply(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> None:
        p = _refresh_payload(envelope)
        outcome = "no subscription at cashfree"
        if isinstance(fetched, Subscription):
            m = await status.apply_subscription(conn, p.mandate_id, fetched)
            outcome = f"mandate {m.status.value}"
        if p.webhook_id is not None:
            await repo.mark_webhook(conn, p.webhook_id, outcome)

    async def aclose(self) -> None:
        await self.client.aclose()


class ChargeWebhook(TwoPhase):
    """`mandate.charge.webhook`: the charge is looked up at Cashfree's subscription payment
    API and moved by the payments module (credited through the purchase path on SUCCESS)."""

    def __init__(self, processing: PaymentProcessing) -> None:
        self.processing = processing

    async def fetch(self, envelope: Envelope) -> object:
        return await self.processing.fetch(envelope)

    async def apply(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> None:
        settled = await self.processing.settle(conn, envelope, fetched)
        try:
            webhook_id = _FromWebhook.model_validate(envelope.payload).webhook_id
        except ValidationError as exc:
            raise PermanentError(f"{envelope.type} carries no webhook_id") from exc
        await repo.mark_webhook(conn, webhook_id, f"payment {settled.value}")

    async def aclose(self) -> None:
        await self.processing.aclose()
