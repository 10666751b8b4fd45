"""Queue handlers on `payment.processing`: `auto_recharge.requested` (run the request),
`payment.credited` (a recharge's payment was credited: it succeeded), and for a recharge
charged on a mandate `mandate_charge.notified` (Cashfree's pre-debit notice: notified) and
`mandate_charge.failed` (the charge ended unpaid: failed at once)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
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
        subscriptions: Callable[[], SubscriptionsClient] | None = None,
    ) -> None:
        self.settings = settings
        self._make_client, self._make_engine = client, engine
        self._make_subs = subscriptions
        self._client: CashfreeClient | None = None
        self._engine: AsyncEngine | None = None
        self._subs: SubscriptionsClient | None = None

    async def fetch(self, envelope: Envelope) -> object:
        try:
            p = RequestedPayload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise PermanentError(f"auto_recharge.requested payload: {exc.errors()[:3]}") from exc
        if self._client is None:
            self._client = self._make_client()
        if self._engine is None:
            self._engine = self._make_engine()
        if self._subs is None and self._make_subs is not None:
            self._subs = self._make_subs()
        return await requests.execute(
            self._engine, self._client, self.settings, p.recharge_id, subs_client=self._subs
        )

    async def apply(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> None:
        return None  # done in `fetch`; the inbox row is what this transaction writes

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._subs is not None:
            await self._subs.aclose()
        if self._engine is not None:
            await self._engine.dispose()


async def concerns(conn: AsyncConnection, payload: Mapping[str, Any]) -> bool:
    """The condition of the `payment.credited` route: only a payment auto-recharge opened
    can be a recharge's (`requested` opens each under its system actor, which the crediting
    names as `auto_recharge`), so no other payment sends this queue a message. An event
    that does not say (written before the field existed) is sent, as every one was."""
    return payload.get("auto_recharge") is not False


async def handle_credited(conn: AsyncConnection, envelope: Envelope) -> None:
    """`payment.credited`: most payments are no recharge's, and nothing happens."""
    try:
        payment_id = uuid.UUID(str(envelope.payload["payment_id"]))
    except (KeyError, ValueError) as exc:
        raise PermanentError("payment.credited payload: no payment_id") from exc
    await outcomes.succeed(conn, payment_id)


class _ChargePayload(StrictInput, extra="ignore"):
    payment_id: uuid.UUID
    failure_code: str = "FAILED"


def _charge(envelope: Envelope) -> _ChargePayload:
    try:
        return _ChargePayload.model_validate(envelope.payload)
    except ValidationError as exc:
        raise PermanentError(f"{envelope.type} payload: {exc.errors()[:3]}") from exc


async def handle_charge_notified(conn: AsyncConnection, envelope: Envelope) -> None:
    """`mandate_charge.notified`: most charges are no recharge's (renewals), and nothing
    happens."""
    await outcomes.notified(conn, _charge(envelope).payment_id)


class ChargeFailed:
    """`mandate_charge.failed`: a recharge's charge failed for good; the recharge fails now
    (back-off, N in a row → disabled), not at the settle job's next run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        p = _charge(envelope)
        await outcomes.charge_failed(conn, self.settings, p.payment_id, p.failure_code[:100])
