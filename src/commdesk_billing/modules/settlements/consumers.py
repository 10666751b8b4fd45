"""`settlements.processing`: send a settlement's transfer, or ask what became of it (after a
payout webhook, or for the status sync)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Literal

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import NotFound
from commdesk_billing.gateway.payouts import CashfreePayoutsClient
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.settlements import transfers
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError
from commdesk_billing.security.text import StrictInput


class SettlementPayload(StrictInput, extra="ignore"):
    settlement_id: uuid.UUID
    source: Literal["created", "retry", "webhook", "sync", "manual"]


class SettlementProcessing:
    """One-phase on purpose, like refunds: `transfers.process` keeps the settlement's row
    locked across the Cashfree call. The Payouts client is built on first use, so a worker
    deployed without the Payouts pair still consumes every other queue (a settlement
    message then fails, is retried and dead-lettered: the alert). So is the community
    directory (its MongoDB client), closed with the handler; `TransferDeferred` (MongoDB
    not answering) is left to the runtime, which retries it."""

    def __init__(
        self,
        settings: Settings,
        client: Callable[[], CashfreePayoutsClient],
        communities: Callable[[], CommunityDirectory],
    ) -> None:
        self.settings = settings
        self._make = client
        self._client: CashfreePayoutsClient | None = None
        self._make_directory = communities
        self._directory: CommunityDirectory | None = None

    @property
    def client(self) -> CashfreePayoutsClient:
        if self._client is None:
            self._client = self._make()
        return self._client

    @property
    def communities(self) -> CommunityDirectory:
        if self._directory is None:
            self._directory = self._make_directory()
        return self._directory

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        try:
            p = SettlementPayload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise PermanentError(f"{envelope.type} payload: {exc.errors()[:3]}") from exc
        try:
            await transfers.process(
                conn,
                self.client,
                self.settings,
                self.communities,
                p.settlement_id,
                source=p.source,
            )
        except (NotFound, transfers.TransferMismatch) as exc:
            raise PermanentError(str(exc)) from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._directory is not None:
            await self._directory.aclose()
