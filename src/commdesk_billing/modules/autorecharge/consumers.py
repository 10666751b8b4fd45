"""Queue handlers on `payment.processing`: `auto_recharge.requested` (run the request) and
`payment.credited` (a recharge's payment was credited: it succeeded)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.modules.autorecharge import outcomes, requests
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError, TwoPhase
from commdesk_billing.security.text import StrictInput


class RequestedPayload(StrictInput):
    recharge_id: uuid.UUID
    wallet_id: uuid.UUID


class AutoRechargeRequests(TwoPhase):
    """All the work is in `fetch`, before the inbox's transaction: it opens an order at
    Cashfree, in transactions of its own (as a person's order is opened), so it needs an
    engine of its own, built on first use (a small pool: one request at a time)."""

    def __init__(
        self,
        settings: Settings,
        client: Callable[[], CashfreeClient],
        engine: Callable[[], AsyncEngine],
    ) -> None:
        self.settings = settings
        self._make_client, self._make_engine = client, engine
        self._client: CashfreeClient | None = None
        self._engine: AsyncEngine | None = None

    async def fetch(self, envelope: Envelope) -> object:
        try:
            p = RequestedPayload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise PermanentError(f"auto_recharge.requested payload: {exc.errors()[:3]}") from exc
        if self._client is None:
            self._client = self._make_client()
        if self._engine is None:
            self._engine = self._make_engine()
        return await requests.execute(self._engine, self._client, self.settings, p.recharge_id)

    async def apply(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> None:
        return None  # done in `fetch`; the inbox row is what this transaction writes

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._engine is not None:
            await self._engine.dispose()


async def handle_credited(conn: AsyncConnection, envelope: Envelope) -> None:
    """`payment.credited`: most payments are no recharge's, and nothing happens."""
    try:
        payment_id = uuid.UUID(str(envelope.payload["payment_id"]))
    except (KeyError, ValueError) as exc:
        raise PermanentError("payment.credited payload: no payment_id") from exc
    await outcomes.succeed(conn, payment_id)
