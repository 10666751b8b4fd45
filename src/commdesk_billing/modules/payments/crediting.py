"""wallet.credit for a paid order: the purchase lot, the bonus lot, the INR journal and the
partner's share (if a partner brought the buyer), in one transaction with the move PAID →
CREDITED.

Every write is keyed by the payment (`payment:<id>:purchase`, `…:bonus`, `…:inr`), and the
status move is conditional, so a redelivered or duplicated message grants nothing twice.

A paid payment that buys no credits (a sponsorship, `Payment.buys_credits` false) is handed
to its kind's `Handover` instead, in the same transaction and under the same conditional
move PAID → CREDITED ("its effect applied"; credits_granted stays 0). The handovers are
given by the composition root (`wiring`), so payments imports none of the modules that
open such payments; a kind with no handover is refused, never credited.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.fraud import reviews as fraud_reviews
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.partners import service as partners
from commdesk_billing.modules.payments import labels
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.state import Status, move
from commdesk_billing.modules.wallet import service as wallet_service
from commdesk_billing.modules.wallet.model import LotSource
from commdesk_billing.queues import outbox
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry.metrics import CREDIT_PURCHASES, CREDITS_PURCHASED

log = structlog.get_logger(__name__)

# What a paid payment of another kind does instead of granting credits: post its journals
# and move its own rows, in the transaction given, at `at`. Called once per payment (the
# payment's row is locked and PAID; the move to CREDITED follows in the same transaction).
Handover = Callable[[AsyncConnection, Payment, datetime], Awaitable[None]]


class NoHandover(LookupError):
    """A paid payment of a kind nobody takes: nothing is done (the message dead-letters)."""


async def credit_payment(
    conn: AsyncConnection,
    payment_id: uuid.UUID,
    handovers: Mapping[str, Handover] | None = None,
) -> bool:
    """Grant a PAID payment's credits, or hand a payment of another kind over. False (and no
    effect) when it is not PAID: already credited, or held for review."""
    p = await repo.get(conn, payment_id, lock=True)
    if p is None:
        raise LookupError(f"payment {payment_id} does not exist")
    if p.status is not Status.PAID:
        log.info("payment.credit.skipped", payment_id=str(p.id), status=p.status.value)
        return False
    if not p.buys_credits:
        handover = (handovers or {}).get(p.kind)
        if handover is None:
            raise NoHandover(f"payment {p.id} is a {p.kind}: nothing takes it over here")
        at = datetime.now(UTC)
        await handover(conn, p, at)
        await move(conn, p.id, Status.CREDITED, reason=f"handed over ({p.kind})", credited_at=at)
        await _announce(conn, p)
        return True
    ref = str(p.id)
    # The purchase lot and the bonus lot under one lock, in one written batch (keys and
    # order as two grants would use them).
    grants = [
        wallet_service.Grant(
            credits=p.base_credits,
            source=LotSource.purchase,
            idempotency_key=f"payment:{p.id}:purchase",
            reason=f"purchase {p.pack_code or 'top-up'} (order {p.order_id})",
            paid_paise=p.amount_paise,
            taxable_paise=p.taxable_paise,
            source_ref=ref,
            metadata={"payment_id": ref, "order_id": p.order_id},
        )
    ]
    if p.bonus_credits:
        grants.append(
            wallet_service.Grant(
                credits=p.bonus_credits,
                source=LotSource.bonus,
                idempotency_key=f"payment:{p.id}:bonus",
                reason=f"bonus for {p.pack_code} (order {p.order_id})",
                source_ref=ref,
                metadata={"payment_id": ref, "order_id": p.order_id},
            )
        )
    await wallet_service.grant_credits_many(conn, p.wallet_id, grants)
    # Under fraud review: the credits just granted are held at once (same transaction, so
    # they are never spendable) until a reviewer releases them or the payment is refunded.
    await fraud_reviews.hold_if_under_review(
        conn, payment_id=p.id, wallet_id=p.wallet_id, order_id=p.order_id
    )
    at = datetime.now(UTC)
    await post_journal(
        conn,
        postings.payment_captured(
            payment_id=p.id,
            amount=p.amount_paise,
            taxable=p.taxable_paise,
            gst=p.gst_amount_paise,
            at=at,
        ),
    )
    # The buyer's partner, if one brought them, earns its share now (the one call into
    # partners; it imports nothing of payments).
    await partners.on_purchase_credited(conn, p, at=at)
    await move(
        conn,
        p.id,
        Status.CREDITED,
        reason="credits granted",
        credited_at=at,
        credits_granted=p.credits,
    )
    bought = (labels.pack(p.pack_code), labels.channel(p.metadata, p.on_mandate))
    aftercommit.count(conn, CREDIT_PURCHASES.labels(*bought))
    aftercommit.count(conn, CREDITS_PURCHASED.labels(*bought), p.credits)
    await _announce(conn, p)
    return True


async def _announce(conn: AsyncConnection, p: Payment) -> None:
    """`payment.credited`: every queue routed for it does its own part (the tax invoice
    today, of the credits or of a sponsorship's fee).

    Called last, with the payment's row locked and, when credits were granted, the
    wallet's row too (the grant took it): a route's condition asked here (usage debt
    repayment: does the wallet owe?) reads what no other transaction can change before
    this one commits."""
    event = {
        "payment_id": str(p.id),
        "order_id": p.order_id,
        "user_id": str(p.user_id),
        "wallet_id": str(p.wallet_id),
        "amount_paise": p.amount_paise,
        "taxable_paise": p.taxable_paise,
        "gst_amount_paise": p.gst_amount_paise,
        "credits": p.credits,
        "pack_code": p.pack_code,
        "kind": p.kind,
        # `order` (a checkout order at Cashfree PG) or `mandate` (a charge on a mandate, at
        # Cashfree Subscriptions): where the payment's details can be looked up.
        "channel": p.channel,
        # Opened by auto-recharge: the only payments its `payment.credited` route acts on
        # (the route's condition reads this, so no other payment sends it a message).
        "auto_recharge": labels.by_auto_recharge(p.metadata),
    }
    await outbox.announce(conn, "payment.credited", event, correlation_id=str(p.id))
