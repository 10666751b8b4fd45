"""Carrying a refund out, steps 2 and 3 of `modules/refunds`.

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
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import (
    NotFound,
)
from commdesk_billing.gateway.errors import CashfreeAuthError, CashfreeRejected
from commdesk_billing.gateway.models import Refund as GatewayRefund
from commdesk_billing.modules.billing import events as billing_events
from commdesk_billing.modules.fraud import reviews as fraud_reviews
from commdesk_billing.modules.fraud import service as fraud
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.ledger.model import Journal
from commdesk_billing.modules.partners import service as partners
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.refunds import channels
from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.modules.refunds.channels import Gateways
from commdesk_billing.modules.refunds.model import OPEN, Refund, RefundStatus
from commdesk_billing.modules.sponsorships import service as sponsorships
from commdesk_billing.modules.subscriptions import refunds as subscription_refunds
from commdesk_billing.modules.wallet import refunds as wallet_refunds
from commdesk_billing.queues import outbox

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
        # Subscriptions' refund API (a mandate debit's refund), cashfree.md §12.8.
        "payment_does_not_exist",
        "subscription_does_not_exist",
    }
)


async def process(
    conn: AsyncConnection, client: Gateways, refund_id: uuid.UUID, *, source: str
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
    conn: AsyncConnection, client: Gateways, refund: Refund, *, source: str
) -> RefundStatus:
    # Which API holds the refund: the payment's channel (a PG order, or a mandate debit).
    payment = await payments.get(conn, refund.payment_id)
    assert payment is not None
    try:
        if refund.status is RefundStatus.CREATED:
            # A split sponsorship's refund names what the vendor gives back, from our books
            # (cashfree.md §14.3), so Cashfree debits the vendor what our journal says.
            shares = (
                await sponsorships.refund_splits(conn, refund.payment_id, refund.passthrough_paise)
                if refund.is_passthrough and not payment.on_mandate
                else None
            )
            answer = await channels.create(client, refund, payment, shares)
        else:
            answer = await channels.fetch(client, refund, payment)
    except CashfreeRejected as exc:
        if exc.code == "refund_id_already_exists":
            # Ours already, with details other than we sent now: what Cashfree holds is
            # the truth, and apply_gateway checks it against the row.
            answer = await channels.fetch(client, refund, payment)
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
            known = await channels.fetch(client, refund, payment)
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
    if answer.order_id and answer.order_id != refund.order_id:
        # A Subscriptions refund id is unique per subscription, not per charge: this one
        # refunds another charge of the mandate. Settling it would say our charge was
        # refunded while the money went back for the other one.
        await _flag(
            conn,
            refund,
            f"Cashfree's refund {answer.refund_id} is of {answer.order_id}, "
            f"ours of {refund.order_id}",
        )
        return refund.status
    if refund.is_passthrough and answer.refund_splits is not None:
        # A split sponsorship's refund: Cashfree must debit the vendor what we asked, or the
        # vendor's balance and our books part ways. Its echo is compared like an order's.
        ours = await sponsorships.refund_splits(conn, refund.payment_id, refund.passthrough_paise)
        asked = sorted((share.vendor_id, share.amount_paise) for share in ours or [])
        echoed = sorted(
            (share.vendor_id or "", share.amount_paise if share.amount_paise is not None else -1)
            for share in answer.refund_splits
        )
        if echoed != asked:
            await _flag(
                conn,
                refund,
                f"Cashfree's refund {answer.refund_id} splits {echoed}, ours {asked}",
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


async def _closed_but_moving(conn: AsyncConnection, client: Gateways, refund: Refund) -> None:
    """We gave this refund's credits back; Cashfree's word that it is going ahead after all
    means money is leaving for credits the buyer kept. Nothing automatic can undo that: it
    is raised for finance (the credits may be clawed back by a person)."""
    payment = await payments.get(conn, refund.payment_id)
    assert payment is not None
    try:
        answer = await channels.fetch(client, refund, payment)
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
    # Lock order everywhere: refund, payment, wallet (or the sponsorship).
    payment = await payments.get(conn, refund.payment_id, lock=True)
    assert payment is not None
    if refund.of_service:
        await _settle_period_payment(conn, refund, at)
        await _succeeded(conn, refund, payment.user_id)
        return
    if refund.is_passthrough:
        # A sponsorship's refund: no credits; its escrow, fee and GST parts become the
        # refund we owe (the sponsorships module's journal, `refund:<id>:inr`).
        await sponsorships.on_refund_succeeded(
            conn,
            refund_id=refund.id,
            refund_ref=refund.refund_ref,
            payment_id=refund.payment_id,
            amount=refund.amount_paise,
            fee=refund.taxable_paise,
            gst=refund.parts.tax_paise,
            escrow=refund.passthrough_paise,
            at=at,
        )
        await _pay_out(conn, refund, at)
        await _succeeded(conn, refund, payment.user_id)
        return
    assert refund.hold_id is not None
    await wallet_refunds.capture_refund(
        conn,
        hold_id=refund.hold_id,
        takes=refund.takes,
        idempotency_key=f"refund:{refund.id}:capture",
        reason=f"refund of order {refund.order_id}",
        refund_ref=refund.refund_ref,
        taxable_paise=refund.taxable_paise,
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
    await _pay_out(conn, refund, at, owed)
    # The purchase's partner share, if any, shrinks in the refund's proportion.
    await partners.on_refund_succeeded(conn, refund.id, refund.payment_id, refund.taxable_paise)
    await _succeeded(conn, refund, payment.user_id)


async def _settle_period_payment(conn: AsyncConnection, refund: Refund, at: datetime) -> None:
    """An INR subscription period's refund: the money `subscription.paid` recognized goes
    back (subscription revenue and GST payable to refunds payable), then out of gateway
    clearing. The period itself is not touched (`subscriptions/refunds.py`)."""
    period = await subscription_refunds.period_payment(conn, refund.payment_id)
    assert period is not None  # checked when the refund was opened; attempts never regress
    owed = postings.subscription_refund_owed(
        refund_id=refund.id,
        refund_ref=refund.refund_ref,
        payment_id=refund.payment_id,
        subscription_id=period.subscription_id,
        period_number=period.period_number,
        amount=refund.amount_paise,
        taxable=refund.taxable_paise,
        tax=refund.parts.tax_paise,
        at=at,
    )
    await _pay_out(conn, refund, at, owed)
    log.info(
        "refund.subscription_period",
        refund_id=str(refund.id),
        subscription_id=str(period.subscription_id),
        period=period.period_number,
        applied=period.applied,
    )


async def _pay_out(conn: AsyncConnection, refund: Refund, at: datetime, *owed: Journal) -> None:
    """Post `owed` (the refund as we owe it, where this module writes that journal), then
    the refund paid out of gateway clearing (`refund_paid`), in that order."""
    paid = postings.refund_paid(
        refund_id=refund.id,
        refund_ref=refund.refund_ref,
        payment_id=refund.payment_id,
        amount=refund.amount_paise,
        at=at,
    )
    for journal in (*owed, paid):
        await post_journal(conn, journal)


async def _succeeded(conn: AsyncConnection, refund: Refund, user_id: uuid.UUID) -> None:
    """What every successful refund records and announces, of credits or not."""
    await payments.add_refunded(conn, refund.payment_id, refund.amount_paise)
    await billing_events.record(
        conn,
        "refund.succeeded",
        payment_id=refund.payment_id,
        refund_id=refund.id,
        user_id=user_id,
        amount_paise=refund.amount_paise,
        credits=refund.base_credits + refund.bonus_credits,
    )
    event = {
        "refund_id": str(refund.id),
        "payment_id": str(refund.payment_id),
        "user_id": str(user_id),
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
    assert payment is not None
    if refund.of_service:
        pass  # a subscription period's refund held nothing: nothing to give back
    elif refund.is_passthrough:
        # A sponsorship's refund held milestones, not credits: they are its again.
        await sponsorships.on_refund_given_back(
            conn, refund_id=refund.id, payment_id=refund.payment_id
        )
    else:
        assert refund.hold_id is not None
        released = await wallet_refunds.release_refund(
            conn,
            hold_id=refund.hold_id,
            takes=refund.takes,
            idempotency_key=f"refund:{refund.id}:release",
            reason=f"refund of order {refund.order_id} {to.value.lower()}",
            refund_ref=refund.refund_ref,
        )
        # A refund that settled a fraud review: the credits go back under review, not to
        # the member (the release and the new hold in this one transaction).
        await fraud_reviews.reopen_after_failed_refund(
            conn,
            payment_id=payment.id,
            wallet_id=payment.wallet_id,
            order_id=payment.order_id,
            refund_id=refund.id,
            refund_created_at=refund.created_at,
        )
        # A review opened while this refund held the credits could not hold them then.
        await fraud_reviews.hold_what_came_back(conn, released.wallet)
    await billing_events.record(
        conn,
        f"refund.{to.value.lower()}",
        payment_id=refund.payment_id,
        refund_id=refund.id,
        user_id=payment.user_id,
        amount_paise=refund.amount_paise,
        data={"reason": reason[:200]},
    )
    # For whoever consumes it (events out: `refund.failed`, with the status it ended in).
    await outbox.announce(
        conn,
        "refund.failed",
        {
            "refund_id": str(refund.id),
            "payment_id": str(refund.payment_id),
            "user_id": str(payment.user_id),
            "amount_paise": refund.amount_paise,
            "status": to.value,
        },
        correlation_id=str(refund.id),
    )
    log.warning("refund.not_made", refund_id=str(refund.id), status=to.value, reason=reason)
