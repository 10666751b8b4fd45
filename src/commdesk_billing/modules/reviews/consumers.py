"""`fraud.detection`: a credited purchase (`payment.credited`) is scored again with what
only Cashfree knows — the UPI VPA or card it was paid with.

Two phases (`TwoPhase`): Cashfree's payments of the order are fetched before the
transaction opens; the scoring, its record and (for a high score) the review and its hold
are applied in the consumer's transaction. A purchase whose score asks for a review has
its credits held from then on (what is still unspent of them); one already released or
refunded over a hold, or scored at this stage before (a redelivery), is left alone. A
review released before anything was held (before the buyer paid) is reopened: that
release never saw what the payment shows.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from pydantic import ConfigDict, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import CashfreeRejected
from commdesk_billing.gateway.models import PaymentStatus
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.modules.fraud import reviews as fraud_reviews
from commdesk_billing.modules.fraud import screening
from commdesk_billing.modules.fraud.rules import Action
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.state import Status
from commdesk_billing.modules.wallet import service as wallets
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError, TwoPhase
from commdesk_billing.security.text import StrictInput

log = structlog.get_logger(__name__)


class CreditedPayload(StrictInput):
    # `payment.credited` carries more (amounts, pack, kind); only these are read here.
    model_config = ConfigDict(extra="ignore")

    payment_id: uuid.UUID


class FraudDetection(TwoPhase):
    def __init__(
        self, client: CashfreeClient, settings: Settings, store: RedisStore | None
    ) -> None:
        self.client = client
        self.settings = settings
        self.store = store

    def _payload(self, envelope: Envelope) -> CreditedPayload:
        try:
            return CreditedPayload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise PermanentError(f"fraud.detection payload: {exc.errors()[:3]}") from exc

    async def fetch(self, envelope: Envelope) -> object:
        if not self.settings.fraud_enabled:
            return None  # the kill switch: nothing is scored
        order_id = envelope.payload.get("order_id")
        if not isinstance(order_id, str) or envelope.payload.get("kind") not in ("pack", "custom"):
            return None  # not a credit purchase at checkout: nothing to score here
        if envelope.payload.get("channel", "order") != "order":
            # A charge on the member's own mandate (auto-recharge): there is no PG order to
            # look up (Cashfree answers 404), and its instrument is the mandate the member
            # authorised on Cashfree's page.
            return None
        try:
            pairs = await self.client.order_payments_raw(order_id)
        except CashfreeRejected as exc:
            raise PermanentError(f"cashfree refused the lookup: {exc}") from exc
        won = [raw for p, raw in pairs if p.payment_status == PaymentStatus.SUCCESS]
        return won[0] if won else None

    async def apply(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> None:
        p = self._payload(envelope)
        if fetched is None:
            return
        assert isinstance(fetched, dict)
        # Lock order of every money path: the payment, its wallet (in the hold), the review.
        payment = await payments.get(conn, p.payment_id, lock=True)
        if payment is None or payment.status is not Status.CREDITED or not payment.buys_credits:
            return
        # The wallet before the review row, as every path takes them (a spend hold's
        # release locks the wallet, then the wallet's pending reviews).
        await wallets.get_wallet(conn, payment.wallet_id, lock=True)
        method: Any = fetched.get("payment_method")
        instrument, vpa = screening.instrument_of(method if isinstance(method, dict) else None)
        screened = await screening.screen_paid(
            conn,
            self.store,
            self.settings,
            user_id=payment.user_id,
            wallet_id=payment.wallet_id,
            payment_id=payment.id,
            amount_paise=payment.amount_paise,
            instrument=instrument,
            vpa=vpa,
        )
        if not await screening.record_paid(conn, screened, payment.id, instrument):
            return
        await payments.raise_fraud_score(conn, payment.id, screened.verdict.score)
        if screened.action is Action.allow:
            return
        # Review or block: paid already, so either way the credits wait for a reviewer.
        opened = await fraud_reviews.open_review(
            conn,
            payment_id=payment.id,
            user_id=payment.user_id,
            wallet_id=payment.wallet_id,
            stage="paid",
            score=screened.verdict.score,
            rules=screened.verdict.rules,
        )
        if not opened:
            await fraud_reviews.reopen_if_released_unseen(
                conn,
                payment_id=payment.id,
                score=screened.verdict.score,
                rules=screened.verdict.rules,
            )
        held = await fraud_reviews.hold_if_under_review(
            conn, payment_id=payment.id, wallet_id=payment.wallet_id, order_id=payment.order_id
        )
        log.warning(
            "fraud.paid.review",
            payment_id=str(payment.id),
            score=screened.verdict.score,
            held=str(held),
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.store is not None:
            await self.store.aclose()
