"""Queue handlers: `payment.processing` (ask Cashfree, move the payment) and the
`payment.paid` message on `wallet.credit` (grant the credits)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import CashfreeRejected
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.payments import mandate_truth, verification
from commdesk_billing.modules.payments.crediting import Handover, credit_payment
from commdesk_billing.modules.payments.state import Status
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError, TwoPhase
from commdesk_billing.security.text import StrictInput
from commdesk_billing.security.timestamps import Timestamp


class ProcessPayload(StrictInput):
    payment_id: uuid.UUID
    order_id: str = Field(pattern=r"^[A-Za-z0-9_-]{3,45}$")
    order_expires_at: Timestamp
    source: Literal["webhook", "sync", "manual"]
    webhook_id: uuid.UUID | None = None
    # Set for a charge raised on a mandate: its truth is the subscription payment API.
    subscription_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_. -]{1,250}$")


class PaidPayload(StrictInput):
    payment_id: uuid.UUID


class PaymentProcessing(TwoPhase):
    """Fetch the order and its payments from Cashfree, then apply them to the payment; for a
    charge on a mandate, its subscription payment (`mandate_truth`)."""

    def __init__(
        self,
        client: CashfreeClient,
        settings: Settings,
        subs_client: SubscriptionsClient | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.subs_client = subs_client

    def _payload(self, envelope: Envelope) -> ProcessPayload:
        try:
            return ProcessPayload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise PermanentError(f"payment.processing payload: {exc.errors()[:3]}") from exc

    async def fetch(self, envelope: Envelope) -> object:
        p = self._payload(envelope)
        try:
            if p.subscription_id is not None:
                if self.subs_client is None:
                    raise PermanentError("no Subscriptions client to verify a mandate charge")
                return await mandate_truth.fetch_charge_truth(
                    self.subs_client, p.subscription_id, p.order_id
                )
            return await verification.fetch_truth(self.client, p.order_id, p.order_expires_at)
        except CashfreeRejected as exc:
            # 401/400 from Cashfree will not heal by retrying this message: dead-letter it
            # with the reason (a lost message costs nothing: the sync job asks again).
            raise PermanentError(f"cashfree refused the lookup: {exc}") from exc
        # A 429 (CashfreeRateLimited) goes up as it is: transient, so the message takes the
        # retry ladder. The client does not sleep on it (`cashfree_rate_limit_wait_s`) and
        # has recorded the back-off the sync job honours.

    async def apply(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> None:
        await self.settle(conn, envelope, fetched)

    async def settle(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> Status:
        """Apply what was fetched; the payment's status after it."""
        p = self._payload(envelope)
        if isinstance(fetched, mandate_truth.ChargeTruth):
            return await mandate_truth.apply_charge_truth(
                conn, self.settings, p.payment_id, fetched, source=p.source
            )
        assert isinstance(fetched, verification.Truth)
        return await verification.apply_truth(
            conn, self.settings, p.payment_id, fetched, source=p.source
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.subs_client is not None:
            await self.subs_client.aclose()


class PaidPayments:
    """`payment.paid`: grant a purchase's credits, or hand a payment of another kind to its
    module (`handovers`, given by the composition root)."""

    def __init__(self, handovers: Mapping[str, Handover] | None = None) -> None:
        self.handovers = dict(handovers or {})

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        try:
            p = PaidPayload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise PermanentError(f"payment.paid payload: {exc.errors()[:3]}") from exc
        try:
            await credit_payment(conn, p.payment_id, self.handovers)
        except LookupError as exc:  # no such payment, or no handover for its kind
            raise PermanentError(str(exc)) from exc


# Credit purchases only (a payment of another kind dead-letters, never credited).
handle_paid = PaidPayments()
