"""What became of a webhook: the messages a stored webhook prompted are handled by the
payments and refunds consumers, and the webhook's row then records the outcome. Wrapping them
here keeps the dependency one way (webhooks → payments, refunds)."""

from __future__ import annotations

import uuid

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.payments.consumers import PaymentProcessing
from commdesk_billing.modules.refunds.consumers import RefundProcessing
from commdesk_billing.modules.webhooks import service
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError, TwoPhase
from commdesk_billing.security.text import StrictInput


class _FromWebhook(StrictInput, extra="ignore"):
    webhook_id: uuid.UUID


def _webhook_id(envelope: Envelope) -> uuid.UUID:
    try:
        return _FromWebhook.model_validate(envelope.payload).webhook_id
    except ValidationError as exc:
        raise PermanentError(f"{envelope.type} carries no webhook_id: {exc.errors()[:3]}") from exc


class PaymentWebhook(TwoPhase):
    """`payment.webhook`: Cashfree's word prompts a look at its API (never believed as is),
    the payment moves on what the API says, and the webhook row is marked processed."""

    def __init__(self, processing: PaymentProcessing) -> None:
        self.processing = processing

    async def fetch(self, envelope: Envelope) -> object:
        _webhook_id(envelope)
        return await self.processing.fetch(envelope)

    async def apply(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> None:
        status = await self.processing.settle(conn, envelope, fetched)
        await service.mark_processed(conn, _webhook_id(envelope), f"payment {status.value}")

    async def aclose(self) -> None:
        await self.processing.aclose()


class RefundWebhook:
    """`refund.webhook`: the refund is looked up at Cashfree and settled, then the webhook
    row is marked processed (one transaction, the refund's row locked throughout)."""

    def __init__(self, processing: RefundProcessing) -> None:
        self.processing = processing

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        webhook_id = _webhook_id(envelope)
        status = await self.processing.settle(conn, envelope)
        await service.mark_processed(conn, webhook_id, f"refund {status.value}")

    async def aclose(self) -> None:
        await self.processing.aclose()
