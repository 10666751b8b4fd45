"""Asking for a refund (the seed's refundPayment), step 1 of `modules/refunds`: in the API's
transaction, lock the payment, then its wallet; work out what is still refundable
(unconsumed, unreserved credits of the purchase's own lots, DESIGN §3); hold the credits the
refund takes back, earmarked on those lots; write the refund row (CREATED) and send
`refund.processing`. No spend can take those credits now, and a spend that got there first
shrinks what is refundable (the 422 says how much).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.errors import (
    IdempotencyMismatch,
    InvalidAmount,
    NotFound,
    PaymentNotRefundable,
)
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, run_keyed
from commdesk_billing.modules.fraud import reviews as fraud_reviews
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.state import Status as PaymentStatus
from commdesk_billing.modules.refunds import auth, opening, periods
from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.modules.refunds.allocation import (
    Parts,
    Purchase,
    Room,
    next_refund,
    refundable,
)
from commdesk_billing.modules.refunds.model import Refund, RefundStatus
from commdesk_billing.modules.refunds.schemas import RefundOut, RefundRequest
from commdesk_billing.modules.sponsorships import service as sponsorships
from commdesk_billing.modules.sponsorships.figures import RefundFigures, refund_figures
from commdesk_billing.modules.sponsorships.model import Milestone
from commdesk_billing.modules.subscriptions import refunds as subscription_refunds
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.wallet import refunds as wallet_refunds
from commdesk_billing.modules.wallet import service as wallets
from commdesk_billing.security.jwt import Principal

log = structlog.get_logger(__name__)


def purchase_of(p: Payment) -> Purchase:
    return Purchase(
        amount_paise=p.amount_paise,
        taxable_paise=p.taxable_paise,
        cgst_paise=p.cgst_paise,
        sgst_paise=p.sgst_paise,
        igst_paise=p.igst_paise,
        base_credits=p.base_credits,
        bonus_credits=p.bonus_credits,
    )


@dataclass(frozen=True)
class Refundable:
    payment: Payment
    standing: Parts
    room: Room
    lots: dict[str, tuple[uuid.UUID, int, int]]

    @property
    def paise(self) -> int:
        return refundable(purchase_of(self.payment), self.standing, self.room)


async def _refundable(conn: AsyncConnection, payment: Payment) -> Refundable:
    """What can be refunded now. Call with the payment's wallet locked for a decision."""
    lots = await wallets.lots_of_payment(conn, payment.id)
    wallet = await wallets.get_wallet(conn, payment.wallet_id)
    assert wallet is not None
    standing = await repo.standing_parts(conn, payment.id)
    room = Room(
        base_drawable=lots["purchase"][1] if "purchase" in lots else 0,
        bonus_drawable=lots["bonus"][1] if "bonus" in lots else 0,
        available=wallet.available_credits,
    )
    return Refundable(payment, standing, room, lots)


async def refundable_now(conn: AsyncConnection, payment_id: uuid.UUID) -> int:
    payment = await payments.get(conn, payment_id)
    if payment is None or payment.status is not PaymentStatus.CREDITED:
        return 0
    if subscription_refunds.is_period_payment(payment):
        if await subscription_refunds.period_payment(conn, payment.id) is None:
            return 0
        return payment.amount_paise - (await repo.standing_parts(conn, payment.id)).amount_paise
    if not payment.buys_credits:
        standing = await repo.standing_parts(conn, payment.id)
        escrow = await sponsorships.refundable_escrow(
            conn, payment.id, standing.amount_paise - standing.taxable_paise - standing.tax_paise
        )
        if escrow == 0:
            return 0
        return (await _sponsorship_figures(conn, payment, escrow)).amount_paise
    return (await _refundable(conn, payment)).paise


async def _sponsorship_figures(
    conn: AsyncConnection, payment: Payment, escrow: int
) -> RefundFigures:
    """A sponsorship refund returning `escrow`, after the payment's standing refunds."""
    standing = await repo.standing_parts(conn, payment.id)
    return refund_figures(
        amount_paise=payment.passthrough_paise,
        fee_paise=payment.taxable_paise,
        cgst_paise=payment.cgst_paise,
        sgst_paise=payment.sgst_paise,
        igst_paise=payment.igst_paise,
        escrow_before=standing.amount_paise - standing.taxable_paise - standing.tax_paise,
        before=(
            standing.taxable_paise,
            standing.cgst_paise,
            standing.sgst_paise,
            standing.igst_paise,
        ),
        escrow=escrow,
    )


async def open_refund(
    conn: AsyncConnection,
    settings: Settings,
    caller: Principal,
    payment_id: uuid.UUID,
    body: RefundRequest,
    operation_key: str,
) -> Refund:
    # Who may ask is settled before anything is locked; someone else's payment is not found.
    found = await payments.get(conn, payment_id)
    if found is None:
        raise NotFound(f"payment {payment_id} does not exist")
    owner = await users.is_subject(conn, found.user_id, caller.sub)
    auth.may_see_payment(caller, found, buyer=owner)
    payment = await payments.get(conn, payment_id, lock=True)
    assert payment is not None
    auth.authorize_refund(settings, caller, payment, owner)
    if payment.status is not PaymentStatus.CREDITED:
        raise PaymentNotRefundable(
            f"payment {payment.id} is {payment.status.value}; only credited purchases are "
            "refunded here"
        )
    # A debit on a mandate (auto-recharge) is refunded exactly as a checkout purchase: only
    # where Cashfree is asked differs (Subscriptions' refund API, `channels.py`).
    if subscription_refunds.is_period_payment(payment):
        return await periods.open_period_refund(conn, caller, payment, body, operation_key)
    if not payment.buys_credits:
        return await _open_sponsorship_refund(conn, caller, payment, body, operation_key)
    if body.milestones is not None:
        raise InvalidAmount("milestones name a sponsorship's refund; this is a credit purchase")
    # Lock order everywhere: payment, then its wallet (as crediting does).
    await wallets.get_wallet(conn, payment.wallet_id, lock=True)
    # A payment under fraud review: its review ends as refunded and its held credits are
    # released here, so this refund reserves them next (one transaction, same locks).
    await fraud_reviews.settle_by_refund(
        conn,
        caller,
        payment.id,
        whole=body.amount_paise is None or body.amount_paise >= payment.amount_paise,
    )
    state = await _refundable(conn, payment)
    can = state.paise
    amount = opening.requested_amount(payment, body, can)
    parts = next_refund(purchase_of(payment), state.standing, amount)
    if parts.credits == 0:
        raise InvalidAmount("the refund is smaller than the value of one credit")
    refund_id = uuid.uuid4()
    ref = opening.refund_ref(refund_id)
    takes = [(state.lots["purchase"][0], parts.base_credits)] if parts.base_credits else []
    if parts.bonus_credits:
        takes.append((state.lots["bonus"][0], parts.bonus_credits))
    held = await wallet_refunds.reserve_for_refund(
        conn,
        wallet_id=payment.wallet_id,
        takes=takes,
        idempotency_key=f"refund:{refund_id}:hold",
        reason=f"refund of order {payment.order_id}",
        refund_ref=ref,
    )
    assert held.hold is not None
    await repo.insert(
        conn,
        {
            **opening.row(refund_id, caller, payment, body, operation_key),
            **opening.parts_columns(parts),
            "base_credits": parts.base_credits,
            "bonus_credits": parts.bonus_credits,
            "purchase_lot_id": state.lots["purchase"][0],
            "bonus_lot_id": state.lots["bonus"][0] if "bonus" in state.lots else None,
            "hold_id": held.hold.id,
            "status": RefundStatus.CREATED.value,
        },
    )
    return await opening.announce(
        conn,
        caller,
        payment,
        refund_id,
        amount_paise=amount,
        credits=parts.credits,
        details={"refund_id": str(refund_id), "amount_paise": amount, "reason": body.reason},
        # The payment and its wallet, as the refund found them and as it leaves them (the
        # credits it takes back are held until Cashfree answers).
        before={
            "refunded_paise": state.standing.amount_paise,
            "refundable_paise": can,
            "available_credits": state.room.available,
        },
        after={
            "refunded_paise": state.standing.amount_paise + parts.amount_paise,
            "refund_status": RefundStatus.CREATED.value,
            "held_credits": parts.credits,
            "available_credits": held.wallet.available_credits,
        },
    )


async def _open_sponsorship_refund(
    conn: AsyncConnection,
    caller: Principal,
    payment: Payment,
    body: RefundRequest,
    operation_key: str,
) -> Refund:
    """A sponsorship's refund (finance_admin only): whole milestones still in escrow, with
    their proportion of the fee and GST (cumulative over the payment's standing refunds, so
    refunds add up to the whole fee and GST exactly when the whole amount is returned). No
    credits, no hold: the milestones themselves are spoken for until Cashfree answers."""
    auth.authorize_sponsorship_refund(caller)
    split = await sponsorships.is_split(conn, payment.id)
    if split:
        # Easy Split: no escrow, no milestones to return; `amount_paise` is the community's
        # part to return (default: all that is left), the fee and GST in proportion on top.
        if body.milestones is not None:
            raise InvalidAmount(
                "a split sponsorship is refunded by amount_paise (the community's part to "
                "return), not by milestones"
            )
        standing = await repo.standing_parts(conn, payment.id)
        standing_part = standing.amount_paise - standing.taxable_paise - standing.tax_paise
        s, part = await sponsorships.begin_split_refund(
            conn, payment.id, body.amount_paise, standing_part
        )
        chosen: list[Milestone] = []
    else:
        if body.amount_paise is not None:
            raise InvalidAmount(
                "a sponsorship is refunded by milestones (`milestones`, or none for every "
                "one not released), not by amount_paise"
            )
        s, chosen = await sponsorships.begin_refund(conn, payment.id, body.milestones)
        part = sum(m.amount_paise for m in chosen)
    figures = await _sponsorship_figures(conn, payment, part)
    refunded = (await repo.standing_parts(conn, payment.id)).amount_paise
    refund_id = uuid.uuid4()
    await repo.insert(
        conn,
        {
            **opening.row(refund_id, caller, payment, body, operation_key),
            "amount_paise": figures.amount_paise,
            "taxable_paise": figures.fee_paise,
            "cgst_paise": figures.cgst_paise,
            "sgst_paise": figures.sgst_paise,
            "igst_paise": figures.igst_paise,
            "passthrough_paise": figures.escrow_paise,
            "base_credits": 0,
            "bonus_credits": 0,
            "purchase_lot_id": None,
            "bonus_lot_id": None,
            "hold_id": None,
            "status": RefundStatus.CREATED.value,
        },
    )
    if chosen:
        await sponsorships.hold_for_refund(conn, s, chosen, refund_id)
    return await opening.announce(
        conn,
        caller,
        payment,
        refund_id,
        amount_paise=figures.amount_paise,
        credits=0,
        details={
            "refund_id": str(refund_id),
            "amount_paise": figures.amount_paise,
            "sponsorship_id": str(s.id),
            "path": s.path.value,
            "milestones": [m.seq for m in chosen],
            "reason": body.reason,
        },
        before={"refunded_paise": refunded},
        after={
            "refunded_paise": refunded + figures.amount_paise,
            "refund_status": RefundStatus.CREATED.value,
        },
    )


async def request_refund(
    engine: AsyncEngine,
    settings: Settings,
    caller: Principal,
    payment_id: uuid.UUID,
    body: RefundRequest,
    key: str,
) -> Answer:
    shown = body.model_dump(mode="json")
    if body.milestones is None:
        # A purchase refund's body hashes as it did before `milestones` existed, so a key
        # stored then still answers its repeat (not 422 idempotency_key_reused).
        del shown["milestones"]
    keyed = KeyedRequest(
        scope=caller.sub,
        key=key,
        method="POST",
        path=f"/v1/payments/{payment_id}/refunds",
        body=shown,
    )

    async def work(conn: AsyncConnection, operation_key: str) -> Answer:
        # The key's stored answer is pruned after its retention; the refund keeps the key
        # (unique), so a repeat after that is answered from the refund itself.
        done = await repo.by_key(conn, operation_key)
        if done is not None:
            if (
                done.payment_id != payment_id
                or done.reason != body.reason
                or (body.amount_paise is not None and body.amount_paise != done.amount_paise)
            ):
                raise IdempotencyMismatch("this Idempotency-Key was used for another refund")
            return Answer(202, RefundOut.of(done).model_dump(mode="json"))
        refund = await open_refund(conn, settings, caller, payment_id, body, operation_key)
        return Answer(202, RefundOut.of(refund).model_dump(mode="json"))

    return await run_keyed(engine, keyed, work)
