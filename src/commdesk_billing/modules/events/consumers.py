"""`webhooks.outbound`: each money event announced through the outbox becomes its public
events (`vocabulary.py`) and one delivery per endpoint that wants each, in the consumer's
transaction (the scheduler's `deliver_webhooks` sends them)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.modules.events import service
from commdesk_billing.modules.events.vocabulary import Unreadable
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError


class OutboundEvents:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        try:
            await service.record(conn, envelope, self.settings)
        except Unreadable as exc:
            raise PermanentError(f"{envelope.type} payload: {exc}") from exc
