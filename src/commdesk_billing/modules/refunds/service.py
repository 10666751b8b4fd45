"""Refunds of credit purchases (the seed's refundPayment), in an order that cannot lose money.

1. `open_refund` (the API's transaction): lock the payment, then its wallet; work out what is
   still refundable (unconsumed, unreserved credits of the purchase's own lots, DESIGN §3);
   hold the credits the refund takes back, earmarked on those lots; write the refund row
   (CREATED) and `refund.processing` into the outbox. No spend can take those credits now,
   and a spend that got there first shrinks what is refundable (the 422 says how much).
2. `process` (the `refund.processing` consumer, and the sync job): with the refund's row
   locked, ask Cashfree to refund under our refund id (repeat-safe at Cashfree), or ask what
   became of it; apply the answer.
3. SUCCESS: capture the hold (credits back to issuance, lots marked refunded), post the INR
   journals (deferred revenue and GST payable to refunds payable, then refunds payable paid
   out of gateway clearing), add to the payment's refunded total, announce the credit note.
   CANCELLED, or FAILED (Cashfree refused the request): release the hold.

A refund is given up only on Cashfree's explicit word. No answer, a 5xx or a 429 leaves it
where it is, to be asked again; money goes out at most once and credits come back exactly
once, because every step is a conditional move plus idempotent wallet operations, all in
one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.errors import (
    InvalidAmount,
    NotFound,
    PaymentNotRefundable,
    RefundExceedsRefundable,
)
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import CashfreeAuthError, CashfreeRejected
from commdesk_billing.gateway.models import Refund as GatewayRefund
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, run_keyed
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.billing import events as billing_events
from commdesk_billing.modules.fraud import service as fraud
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.repository import post_journal
from commdesk_billing.modules.payments import repository as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.state import Status as PaymentStatus
from commdesk_billing.modules.refunds import auth
from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.modules.refunds.allocation import (
    Parts,
    Purchase,
    Room,
    next_refund,
    refundable,
)
from commdesk_billing.modules.refunds.model import OPEN, Refund, RefundStatus
from commdesk_billing.modules.refunds.schemas import RefundOut, RefundRequest
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.wallet import refunds as wallet_refunds
from commdesk_billing.modules.wallet import repository as wallets
from commdesk_billing.queues import outbox
from commdesk_billing.security.jwt import Principal

log = structlog.get_logger(__name__)

# Cashfree refusals that say the refund was not, and will not be, made. Anything else
# (auth, rate limits, 5xx, timeouts, an unexpected 4xx code) leaves the refund to be asked
# about again rather than give the credits back while money may still go out.
_DEFINITE_REFUSALS = frozenset(
    {
        "refund_amount_invalid",
        "refund_not_allowed",
        "refund_note_invalid",
        "refund_speed_invalid",
        "order_not_found",
        "payment_not_found",
    }
)


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
    lots = await repo.lots_of_payment(conn, payment.id)
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
    return (await _refundable(conn, payment)).paise


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
    # Lock order everywhere: payment, then its wallet (as crediting does).
    await wallets.get_wallet(conn, payment.wallet_id, lock=True)
    state = await _refundable(conn, payment)
    can = state.paise
    amount = can if body.amount_paise is None else body.amount_paise
    if amount == 0 or amount > can:
        raise RefundExceedsRefundable(
            f"{can} paise of payment {payment.id} can be refunded now, {amount} requested",
            refundable_paise=can,
            requested_paise=amount,
        )
    parts = next_refund(purchase_of(payment), state.standing, amount)
    if parts.credits == 0:
        raise InvalidAmount("the refund is smaller than the value of one credit")
    refund_id = uuid.uuid4()
    ref = f"rf_{refund_id.hex}"
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
            "id": refund_id,
            "refund_ref": ref,
            "payment_id": payment.id,
            "wallet_id": payment.wallet_id,
            "order_id": payment.order_id,
            "idempotency_key": operation_key,
            "requested_by": caller.sub,
            "requested_role": caller.role.value,
            "reason": body.reason,
            "amount_paise": parts.amount_paise,
            "taxable_paise": parts.taxable_paise,
            "cgst_paise": parts.cgst_paise,
            "sgst_paise": parts.sgst_paise,
            "igst_paise": parts.igst_paise,
            "base_credits": parts.base_credits,
            "bonus_credits": parts.bonus_credits,
            "purchase_lot_id": state.lots["purchase"][0],
            "bonus_lot_id": state.lots["bonus"][0] if "bonus" in state.lots else None,
            "hold_id": held.hold.id,
            "status": RefundStatus.CREATED.value,
        },
    )
    await audit.record(
        conn,
        caller,
        action="refund.requested",
        target_type="payment",
        target_id=str(payment.id),
        details={"refund_id": str(refund_id), "amount_paise": amount, "reason": body.reason},
    )
    await billing_events.record(
        conn,
        "refund.requested",
        payment_id=payment.id,
        refund_id=refund_id,
        user_id=payment.user_id,
        amount_paise=amount,
        credits=parts.credits,
    )
    await outbox.send(
        conn,
        "refund.processing",
        "refund.requested",
        {"refund_id": str(refund_id), "source": "request"},
        correlation_id=str(payment.id),
    )
    refund = await repo.get(conn, refund_id)
    assert refund is not None
    return refund


async def request_refund(
    engine: AsyncEngine,
    settings: Settings,
    caller: Principal,
    payment_id: uuid.UUID,
    body: RefundRequest,
    key: str,
) -> Answer:
    keyed = KeyedRequest(
        scope=caller.sub,
        key=key,
        method="POST",
        path=f"/v1/payments/{payment_id}/refunds",
        body=body.model_dump(mode="json"),
    )

    async def work(conn: AsyncConnection, operation_key: str) -> Answer:
        refund = await open_refund(conn, settings, caller, payment_id, body, operation_key)
        return Answer(202, RefundOut.of(refund).model_dump(mode="json"))

    return await run_keyed(engine, keyed, work)


# --- processing -----------------------------------------------------------------------------


async def process(
    conn: AsyncConnection, client: CashfreeClient, refund_id: uuid.UUID, *, source: str
) -> RefundStatus:
    """Bring one refund forward: create it at Cashfree if it is CREATED, else ask about it.

    The refund's row stays locked across the call, on purpose: the check "still CREATED",
    the create call and recording its answer are then one step against every other
    processor of this refund, so a refund released after Cashfree refused it can never be
    created afterwards by a late duplicate. Refunds are few; the wait is short and bounded
    by the client's timeout.
    """
    refund = await repo.get(conn, refund_id, lock=True)
    if refund is None:
        raise NotFound(f"refund {refund_id} does not exist")
    if refund.status not in OPEN:
        if source == "webhook" and refund.status is not RefundStatus.SUCCESS:
            await _closed_but_moving(conn, client, refund)
        return refund.status
    if refund.review_reason is not None:
        return refund.status  # parked for a person; see _flag
    status = await _ask(conn, client, refund, source=source)
    # Last, on purpose: a second UPDATE of a row this transaction already updated makes
    # PostgreSQL re-check its foreign keys, taking KEY SHARE on the wallet row; taken before
    # the capture's FOR UPDATE, two refunds of one wallet would deadlock on the upgrade.
    await repo.mark_synced(conn, refund.id)
    return status


async def _ask(
    conn: AsyncConnection, client: CashfreeClient, refund: Refund, *, source: str
) -> RefundStatus:
    try:
        if refund.status is RefundStatus.CREATED:
            answer = await client.create_refund(
                order_id=refund.order_id,
                refund_id=refund.refund_ref,
                amount_paise=refund.amount_paise,
                note=refund.reason,
            )
        else:
            answer = await client.fetch_refund(refund.order_id, refund.refund_ref)
    except CashfreeRejected as exc:
        if exc.code == "refund_id_already_exists":
            # Ours already, with details other than we sent now: what Cashfree holds is
            # the truth, and apply_gateway checks it against the row.
            answer = await client.fetch_refund(refund.order_id, refund.refund_ref)
            return await apply_gateway(conn, refund, answer, source=source)
        if isinstance(exc, CashfreeAuthError):
            raise  # our credentials, not this refund: retried, and alerting as dead letters
        if exc.code not in _DEFINITE_REFUSALS or refund.status is not RefundStatus.CREATED:
            # A refusal we cannot read, or a lookup refused after Cashfree had accepted the
            # refund: asking again every sync period would not change it. For a person.
            await _flag(conn, refund, f"Cashfree refused: {exc}")
            return refund.status
        # The refusal may answer a repeat of a create call whose first attempt Cashfree did
        # accept (a timeout, a rolled-back transaction): only Cashfree not knowing our refund
        # id at all means no money can go out.
        try:
            known = await client.fetch_refund(refund.order_id, refund.refund_ref)
        except CashfreeRejected as lookup:
            if lookup.status != 404:
                raise
            await _give_back(conn, refund, RefundStatus.FAILED, f"Cashfree refused: {exc}"[:500])
            return RefundStatus.FAILED
        return await apply_gateway(conn, refund, known, source=source)
    return await apply_gateway(conn, refund, answer, source=source)


async def _flag(conn: AsyncConnection, refund: Refund, reason: str) -> None:
    """Park a refund for a person: its credits stay held, the sync stops asking, and a
    high-severity fraud event says why (committed with the flag, not rolled back)."""
    await repo.flag_for_review(conn, refund.id, reason[:500])
    await fraud.record(
        conn,
        "refund_needs_review",
        severity="high",
        payment_id=refund.payment_id,
        details={"refund_id": str(refund.id), "reason": reason[:500]},
    )
    log.error("refund.needs_review", refund_id=str(refund.id), reason=reason[:300])


async def apply_gateway(
    conn: AsyncConnection, refund: Refund, answer: GatewayRefund, *, source: str
) -> RefundStatus:
    if answer.refund_id != refund.refund_ref or answer.refund_amount_paise != refund.amount_paise:
        await _flag(
            conn,
            refund,
            f"Cashfree's refund {answer.refund_id} of {answer.refund_amount_paise} paise "
            f"disagrees with ours ({refund.refund_ref}, {refund.amount_paise} paise)",
        )
        return refund.status
    details = {
        "cf_refund_id": answer.cf_refund_id,
        "refund_arn": answer.refund_arn,
        "gateway_status": answer.refund_status[:40],
        "status_description": (answer.status_description or "")[:300] or None,
    }
    status = answer.refund_status.upper()
    reason = f"Cashfree says {status} ({source})"
    if status == "SUCCESS":
        await _settle(conn, refund, reason, details)
        return RefundStatus.SUCCESS
    if status in ("CANCELLED", "FAILED"):
        await _give_back(conn, refund, RefundStatus.CANCELLED, reason, details)
        return RefundStatus.CANCELLED
    if status in ("PENDING", "ONHOLD"):
        to = RefundStatus(status)
        if await repo.move(conn, refund.id, to, reason=reason, **details) is None:
            await repo.note_gateway(conn, refund.id, **details)
        return to
    # A status we do not know: keep what Cashfree said, change nothing, ask again later.
    log.warning("refund.unknown_status", refund_id=str(refund.id), status=status[:40])
    await repo.note_gateway(conn, refund.id, **details)
    return refund.status


async def _closed_but_moving(conn: AsyncConnection, client: CashfreeClient, refund: Refund) -> None:
    """We gave this refund's credits back; Cashfree's word that it is going ahead after all
    means money is leaving for credits the buyer kept. Nothing automatic can undo that: it
    is raised for finance (the credits may be clawed back by a person)."""
    try:
        answer = await client.fetch_refund(refund.order_id, refund.refund_ref)
    except CashfreeRejected:
        return
    if answer.refund_status.upper() in ("SUCCESS", "PENDING", "ONHOLD"):
        await fraud.record(
            conn,
            "refund_after_release",
            severity="high",
            payment_id=refund.payment_id,
            details={
                "refund_id": str(refund.id),
                "our_status": refund.status.value,
                "cashfree_status": answer.refund_status[:40],
            },
        )
        log.error("refund.after_release", refund_id=str(refund.id))


async def _settle(
    conn: AsyncConnection, refund: Refund, reason: str, details: dict[str, str | None]
) -> None:
    at = datetime.now(UTC)
    moved = await repo.move(
        conn, refund.id, RefundStatus.SUCCESS, reason=reason, processed_at=at, **details
    )
    if moved is None:
        return  # already settled (or given back): nothing to do twice
    # Lock order everywhere: refund, payment, wallet.
    payment = await payments.get(conn, refund.payment_id, lock=True)
    assert payment is not None and refund.hold_id is not None
    await wallet_refunds.capture_refund(
        conn,
        hold_id=refund.hold_id,
        takes=refund.takes,
        idempotency_key=f"refund:{refund.id}:capture",
        reason=f"refund of order {refund.order_id}",
        refund_ref=refund.refund_ref,
    )
    # Money back to the buyer: what we owed as credits (deferred revenue) and the GST we
    # collected become a refund we owe; Cashfree pays it out of what it holds for us.
    owed = postings.refund_owed(
        refund_id=refund.id,
        refund_ref=refund.refund_ref,
        payment_id=refund.payment_id,
        order_id=refund.order_id,
        amount=refund.amount_paise,
        taxable=refund.taxable_paise,
        tax=refund.parts.tax_paise,
        at=at,
    )
    paid = postings.refund_paid(
        refund_id=refund.id,
        refund_ref=refund.refund_ref,
        payment_id=refund.payment_id,
        amount=refund.amount_paise,
        at=at,
    )
    for journal in (owed, paid):
        await post_journal(conn, journal)
    await repo.add_refunded(conn, refund.payment_id, refund.amount_paise)
    await billing_events.record(
        conn,
        "refund.succeeded",
        payment_id=refund.payment_id,
        refund_id=refund.id,
        user_id=payment.user_id,
        amount_paise=refund.amount_paise,
        credits=refund.base_credits + refund.bonus_credits,
    )
    event = {
        "refund_id": str(refund.id),
        "payment_id": str(refund.payment_id),
        "user_id": str(payment.user_id),
        "amount_paise": refund.amount_paise,
        "credits": refund.base_credits + refund.bonus_credits,
    }
    # Every queue routed for it does its own part (the credit note today).
    await outbox.announce(conn, "refund.succeeded", event, correlation_id=str(refund.id))
    log.info("refund.succeeded", refund_id=str(refund.id), amount_paise=refund.amount_paise)


async def _give_back(
    conn: AsyncConnection,
    refund: Refund,
    to: RefundStatus,
    reason: str,
    details: dict[str, str | None] | None = None,
) -> None:
    cols = dict(details or {})
    if to is RefundStatus.FAILED:
        cols["failure_reason"] = reason
    moved = await repo.move(
        conn, refund.id, to, reason=reason, processed_at=datetime.now(UTC), **cols
    )
    if moved is None:
        return
    payment = await payments.get(conn, refund.payment_id, lock=True)
    assert payment is not None and refund.hold_id is not None
    await wallet_refunds.release_refund(
        conn,
        hold_id=refund.hold_id,
        takes=refund.takes,
        idempotency_key=f"refund:{refund.id}:release",
        reason=f"refund of order {refund.order_id} {to.value.lower()}",
        refund_ref=refund.refund_ref,
    )
    await billing_events.record(
        conn,
        f"refund.{to.value.lower()}",
        payment_id=refund.payment_id,
        refund_id=refund.id,
        user_id=payment.user_id,
        amount_paise=refund.amount_paise,
        data={"reason": reason[:200]},
    )
    log.warning("refund.not_made", refund_id=str(refund.id), status=to.value, reason=reason)


async def get_refund(conn: AsyncConnection, caller: Principal, refund_id: uuid.UUID) -> Refund:
    refund = await repo.get(conn, refund_id)
    if refund is None:
        raise NotFound(f"refund {refund_id} does not exist")
    await _may_read(conn, caller, refund.payment_id)
    return refund


async def _may_read(conn: AsyncConnection, caller: Principal, payment_id: uuid.UUID) -> Payment:
    payment = await payments.get(conn, payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id} does not exist")
    buyer = await users.is_subject(conn, payment.user_id, caller.sub)
    auth.may_read(caller, payment, buyer=buyer)
    return payment


async def list_refunds(
    conn: AsyncConnection,
    caller: Principal,
    payment_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> tuple[list[Refund], int]:
    await _may_read(conn, caller, payment_id)
    rows = await repo.for_payment(conn, payment_id, limit=limit, before=before)
    return rows, await refundable_now(conn, payment_id)
