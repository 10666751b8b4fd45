"""Sponsor payments: opening a sponsorship, its payment arriving, milestones delivered and
released, and the reads.

Money moves at two points, each one journal from the postings catalogue, keyed (and its id
derived) from the sponsorship, each written with a conditional status change in the same
transaction, so no repeat, race or crash posts anything twice:

- `on_paid`, the payments module's handover for a `sponsorship` payment, called by
  `payments.crediting.credit_payment` in the transaction that moves the payment PAID →
  CREDITED (the payment's row locked): `sponsorship.funded` (Dr gateway clearing, Cr fee
  revenue, Cr GST payable, Cr escrow) and the sponsorship awaiting_payment → funded. No
  credits are granted.
- `release`: `sponsorship.released` (Dr escrow, Cr the community's payable) and the
  milestone delivered → released, under the sponsorship's row lock.

The split path (the community is an ACTIVE Easy Split vendor when the sponsorship is
opened, `splits.service.active_vendor`): the order carries the community's part as the
vendor's share (`order_splits`, exact paise), and `on_paid` posts
`sponsorship.split_funded` (Cr vendor settlements due instead of escrow): Cashfree settles
the part to the vendor, and its vendor settlement webhooks clear the due amount
(`splits.settlements`). Milestones are informational (no escrow, nothing released);
refunds are by amount of the community's part, sent to Cashfree as the refund's split.

The sponsor's order is opened through `payments.ordering.open_charge`: the same row-first,
Cashfree-under-our-order-id path as a purchase, the same hosted checkout, signed webhook,
verification against Cashfree's API and payment state machine.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    InvalidAmount,
    InvalidMilestones,
    MilestoneNotDelivered,
    MilestoneNotFound,
    MilestoneRefunded,
    MilestoneReleased,
    PaymentNotRefundable,
    RefundExceedsRefundable,
    SplitSponsorshipNoRelease,
    SponsorshipNotFound,
    SponsorshipNotFunded,
)
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.split_models import RefundShare, SplitShare
from commdesk_billing.modules.communities.directory import Community
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.accounts import open_community_accounts
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.payments import buyers, ordering
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.splits import service as splits
from commdesk_billing.modules.sponsorships import auth
from commdesk_billing.modules.sponsorships import repository as repo
from commdesk_billing.modules.sponsorships.figures import figures
from commdesk_billing.modules.sponsorships.model import (
    REFUNDABLE,
    Milestone,
    MilestoneStatus,
    Sponsorship,
    SponsorshipPath,
    SponsorshipStatus,
)
from commdesk_billing.modules.sponsorships.schemas import SponsorshipRequest
from commdesk_billing.modules.users import service as users
from commdesk_billing.security.jwt import Principal

log = structlog.get_logger(__name__)

KIND = "sponsorship"  # the payments' kind of a sponsor's payment
MAX_MILESTONES = 20


def _milestones(req: SponsorshipRequest) -> list[tuple[str, int]]:
    """The milestones as (title, amount): they add up to the amount exactly; none given is
    one milestone of the whole amount, titled by the purpose."""
    if not req.milestones:
        return [(req.purpose[:200], req.amount_paise)]
    if len(req.milestones) > MAX_MILESTONES:
        raise InvalidMilestones(f"at most {MAX_MILESTONES} milestones")
    total = sum(m.amount_paise for m in req.milestones)
    if total != req.amount_paise:
        raise InvalidMilestones(
            f"milestones add up to {total} paise; they must add up to the amount, "
            f"{req.amount_paise}",
            milestones_paise=total,
            amount_paise=req.amount_paise,
        )
    return [(m.title, m.amount_paise) for m in req.milestones]


async def _place_of_supply(
    conn: AsyncConnection, settings: Settings, principal: Principal, requested: str | None
) -> str:
    user_id = await users.user_id_for(conn, principal.sub)
    if user_id is None:  # no record yet, so no billing profile either
        return requested or settings.seller_state_code
    return (await buyers.resolve(conn, settings, user_id, requested)).state_code


async def create(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    principal: Principal,
    community: Community,
    req: SponsorshipRequest,
    key: str,
) -> tuple[Sponsorship, list[Milestone], Payment]:
    """Open a sponsorship and the sponsor's Cashfree order. A repeat with the same
    Idempotency-Key and body resumes or returns the same sponsorship; another body is
    refused (`idempotency_key_reused`)."""
    low, high = settings.sponsorship_min_paise, settings.sponsorship_max_paise
    if not low <= req.amount_paise <= high:
        raise InvalidAmount(
            f"a sponsorship is from {low} to {high} paise",
            min_paise=low,
            max_paise=high,
        )
    milestones = _milestones(req)
    # The place of supply as for a purchase (`ordering.open_order`, `buyers.resolve`): a
    # GSTIN on the sponsor's billing profile fixes it; else the request's state, else the
    # profile's or the sponsor's record, else ours.
    buyer_state = await in_transaction(
        engine, lambda conn: _place_of_supply(conn, settings, principal, req.buyer_state)
    )
    fig = figures(
        req.amount_paise,
        fee_bps=settings.sponsorship_fee_bps,
        gst_rate_bp=settings.gst_rate_bp,
        buyer_state=buyer_state,
        seller_state=settings.seller_state_code,
    )
    # The path is chosen once, here: the community's vendor is ACTIVE at Cashfree now, or
    # the money goes to escrow. (A repeat of the key finds the row the first call wrote,
    # with its path and its order's split, whatever the vendor's status is since.)
    vendor_id = await splits.active_vendor(engine, client, community.id)
    charge = ordering.Charge(
        kind=KIND,
        gst=fig.fee,
        passthrough_paise=fig.amount_paise,
        customer_phone=req.customer_phone,
        customer_email=req.customer_email,
        buyer_state=buyer_state,
        about=f"a sponsorship of community {community.id} ({community.name})",
        request=req.model_dump(mode="json"),
        splits=(SplitShare(vendor_id, amount_paise=fig.amount_paise),) if vendor_id else (),
    )

    async def attach(conn: AsyncConnection, payment: Payment) -> None:
        s = Sponsorship(
            id=uuid.uuid4(),
            payment_id=payment.id,
            community_id=community.id,
            sponsor_user_id=payment.user_id,
            path=SponsorshipPath.easy_split if vendor_id else SponsorshipPath.escrow,
            purpose=req.purpose,
            amount_paise=fig.amount_paise,
            fee_bps=fig.fee_bps,
            fee_paise=fig.fee_paise,
            gst_paise=fig.gst_paise,
            total_paise=fig.total_paise,
            status=SponsorshipStatus.awaiting_payment,
            funded_at=None,
            funded_journal_id=None,
            created_by=principal.sub,
            created_at=payment.created_at,
            updated_at=payment.created_at,
            vendor_id=vendor_id,
        )
        await repo.insert(conn, s, milestones)

    # The key's scope is the sponsor's own and apart from their credit orders' keys.
    buyer = ordering.Buyer.person(principal, f"sponsorship:{key}")
    payment = await ordering.open_charge(engine, client, settings, buyer, charge, attach)

    async def read(conn: AsyncConnection) -> tuple[Sponsorship, list[Milestone], Payment]:
        s = await repo.by_payment(conn, payment.id)
        assert s is not None  # written with the payment row
        return s, await repo.milestones(conn, s.id), payment

    return await in_transaction(engine, read)


async def on_paid(conn: AsyncConnection, payment: Payment, at: datetime) -> None:
    """The payments module's handover for a paid sponsorship payment (its row locked, PAID;
    it moves to CREDITED after this, in this transaction)."""
    s = await repo.by_payment(conn, payment.id, lock=True)
    if s is None:
        raise LookupError(f"payment {payment.id} is a sponsorship payment with no sponsorship")
    if s.status is not SponsorshipStatus.awaiting_payment:
        return  # funded already (a repeat): nothing twice
    if (
        payment.amount_paise,
        payment.passthrough_paise,
        payment.taxable_paise,
        payment.gst_amount_paise,
    ) != (s.total_paise, s.amount_paise, s.fee_paise, s.gst_paise):
        # Both rows were written together from the same figures: a difference is a bug or a
        # tamper, and money must not move on it (the message dead-letters, an alert fires).
        raise LookupError(f"sponsorship {s.id} and its payment disagree on the figures")
    if s.split:
        assert s.vendor_id is not None  # the row's CHECK
        if ordering.splits_of(payment) != [(s.vendor_id, s.amount_paise)]:
            # The order was opened with the sponsorship's split (one transaction): another
            # split is a bug or a tamper, and nothing may be posted on it.
            raise LookupError(f"sponsorship {s.id}'s order does not split its part to its vendor")
        journal = postings.sponsorship_split_funded(
            sponsorship_id=s.id,
            payment_id=payment.id,
            community_id=s.community_id,
            vendor_id=s.vendor_id,
            total=s.total_paise,
            fee=s.fee_paise,
            gst=s.gst_paise,
            part=s.amount_paise,
            at=at,
        )
        await post_journal(conn, journal)
        await repo.mark_funded(conn, s.id, journal.id, at)
        log.info(
            "sponsorship.funded",
            sponsorship_id=str(s.id),
            community_id=s.community_id,
            path=s.path.value,
            vendor_id=s.vendor_id,
            split_paise=s.amount_paise,
            fee_paise=s.fee_paise,
        )
        return
    journal = postings.sponsorship_funded(
        sponsorship_id=s.id,
        payment_id=payment.id,
        community_id=s.community_id,
        total=s.total_paise,
        fee=s.fee_paise,
        gst=s.gst_paise,
        escrow=s.amount_paise,
        at=at,
    )
    await post_journal(conn, journal)
    await repo.mark_funded(conn, s.id, journal.id, at)
    log.info(
        "sponsorship.funded",
        sponsorship_id=str(s.id),
        community_id=s.community_id,
        escrow_paise=s.amount_paise,
        fee_paise=s.fee_paise,
    )


# --- milestones ------------------------------------------------------------------------------


async def require(
    conn: AsyncConnection, sponsorship_id: uuid.UUID, *, lock: bool = False
) -> Sponsorship:
    s = await repo.get(conn, sponsorship_id, lock=lock)
    if s is None:
        raise SponsorshipNotFound(f"sponsorship {sponsorship_id} does not exist")
    return s


async def _milestone(conn: AsyncConnection, s: Sponsorship, seq: int) -> Milestone:
    m = await repo.milestone(conn, s.id, seq, lock=True)
    if m is None:
        raise MilestoneNotFound(f"sponsorship {s.id} has no milestone {seq}")
    return m


def _funded(s: Sponsorship) -> None:
    if s.status is SponsorshipStatus.awaiting_payment:
        raise SponsorshipNotFunded(
            f"sponsorship {s.id} is not paid yet: nothing is held for its milestones"
        )


async def deliver(
    conn: AsyncConnection,
    principal: Principal,
    community: Community,
    sponsorship_id: uuid.UUID,
    seq: int,
) -> Milestone:
    """The community's owner marks a milestone delivered. Marking it again changes nothing
    (the answer is the milestone as it is)."""
    s = await require(conn, sponsorship_id, lock=True)
    if s.community_id != community.id:
        raise SponsorshipNotFound(f"sponsorship {sponsorship_id} does not exist")
    auth.authorize_deliver(principal, community)
    _funded(s)
    m = await _milestone(conn, s, seq)
    if m.status not in REFUNDABLE | {MilestoneStatus.released}:
        raise MilestoneRefunded(f"milestone {seq} of sponsorship {s.id} is refunded")
    if m.status is MilestoneStatus.pending:
        await repo.mark_delivered(conn, s.id, seq, principal.sub, datetime.now(UTC))
        log.info("sponsorship.milestone.delivered", sponsorship_id=str(s.id), milestone=seq)
    done = await repo.milestone(conn, s.id, seq)
    assert done is not None
    return done


async def release(
    conn: AsyncConnection, principal: Principal, sponsorship_id: uuid.UUID, seq: int
) -> Milestone:
    """finance_admin or the sponsor who paid approves a delivered milestone: its amount
    leaves the escrow for the community's payable, once. Finance may not release an
    undelivered milestone either: money stuck on an undelivered promise is refunded, not
    paid out."""
    s = await require(conn, sponsorship_id, lock=True)
    sponsor = auth.is_sponsor(
        principal, await users.is_subject(conn, s.sponsor_user_id, principal.sub)
    )
    auth.authorize_release(principal, sponsor=sponsor)
    if s.split:
        raise SplitSponsorshipNoRelease(
            f"sponsorship {s.id} is split: Cashfree settles the community's part to its "
            "vendor; its milestones are informational"
        )
    _funded(s)
    m = await _milestone(conn, s, seq)
    if m.status is MilestoneStatus.released:
        raise MilestoneReleased(f"milestone {seq} of sponsorship {s.id} was released already")
    if m.status not in REFUNDABLE:
        raise MilestoneRefunded(f"milestone {seq} of sponsorship {s.id} is refunded")
    if m.status is not MilestoneStatus.delivered:
        raise MilestoneNotDelivered(f"milestone {seq} of sponsorship {s.id} is not delivered yet")
    at = datetime.now(UTC)
    accounts = await open_community_accounts(conn, s.community_id)
    journal = postings.sponsorship_released(
        sponsorship_id=s.id, seq=seq, community=accounts, amount=m.amount_paise, at=at
    )
    await post_journal(conn, journal)
    released = await repo.mark_released(conn, s.id, seq, journal.id, principal.sub, at)
    assert released, "the milestone row is locked and delivered"
    log.info(
        "sponsorship.milestone.released",
        sponsorship_id=str(s.id),
        community_id=s.community_id,
        milestone=seq,
        amount_paise=m.amount_paise,
    )
    done = await repo.milestone(conn, s.id, seq)
    assert done is not None
    return done


# --- refunds (called by the refunds module, in its transactions) -----------------------------
#
# A sponsorship is refunded by whole milestones whose money is still in escrow (pending or
# delivered): released milestones are the community's and are not taken back. The refund
# returns their amount and, in proportion, the fee and GST (`figures.refund_figures`). Lock
# order: the refund's row, the payment's, then the sponsorship's (as crediting: payment, then
# sponsorship).


async def begin_refund(
    conn: AsyncConnection, payment_id: uuid.UUID, seqs: list[int] | None
) -> tuple[Sponsorship, list[Milestone]]:
    """The sponsorship of a payment being refunded (its row locked) and the milestones the
    refund returns: those named, or every one still refundable."""
    s = await repo.by_payment(conn, payment_id, lock=True)
    if s is None:
        raise LookupError(f"payment {payment_id} is a sponsorship payment with no sponsorship")
    _funded(s)
    if s.split:
        raise LookupError(f"sponsorship {s.id} is split: refunded by amount, not milestones")
    ms = await repo.milestones(conn, s.id)
    if seqs is None:
        chosen = [m for m in ms if m.status in REFUNDABLE]
    else:
        by_seq = {m.seq: m for m in ms}
        chosen = []
        for seq in sorted(set(seqs)):
            m = by_seq.get(seq)
            if m is None:
                raise MilestoneNotFound(f"sponsorship {s.id} has no milestone {seq}")
            if m.status is MilestoneStatus.released:
                raise MilestoneReleased(
                    f"milestone {seq} of sponsorship {s.id} was released: it is the "
                    "community's, not refundable"
                )
            if m.status not in REFUNDABLE:
                raise MilestoneRefunded(f"milestone {seq} of sponsorship {s.id} is refunded")
            chosen.append(m)
    if not chosen:
        raise PaymentNotRefundable(
            f"sponsorship {s.id} holds nothing in escrow to refund: released milestones are "
            "the community's"
        )
    return s, chosen


async def refundable_escrow(
    conn: AsyncConnection, payment_id: uuid.UUID, standing_part: int = 0
) -> int:
    """What a refund of everything still refundable would return of the community's part (0
    before funding); a read, nothing locked. Escrow: every milestone still refundable. Split:
    the part less what standing refunds (`standing_part`) return already."""
    s = await repo.by_payment(conn, payment_id)
    if s is None or s.status is SponsorshipStatus.awaiting_payment:
        return 0
    if s.split:
        return max(0, s.amount_paise - standing_part)
    return sum(m.amount_paise for m in await repo.milestones(conn, s.id) if m.status in REFUNDABLE)


async def is_split(conn: AsyncConnection, payment_id: uuid.UUID) -> bool:
    s = await repo.by_payment(conn, payment_id)
    return s is not None and s.split


async def begin_split_refund(
    conn: AsyncConnection, payment_id: uuid.UUID, part: int | None, standing_part: int
) -> tuple[Sponsorship, int]:
    """A split sponsorship's refund (its row locked, after the payment's): `part` of the
    community's share, or all that is left when None. `standing_part`: what the payment's
    standing refunds return of it already. Refused beyond what is left."""
    s = await repo.by_payment(conn, payment_id, lock=True)
    if s is None:
        raise LookupError(f"payment {payment_id} is a sponsorship payment with no sponsorship")
    _funded(s)
    left = s.amount_paise - standing_part
    if left <= 0:
        raise PaymentNotRefundable(
            f"sponsorship {s.id}'s part has been refunded already, or is being refunded"
        )
    want = left if part is None else part
    if not 0 < want <= left:
        raise RefundExceedsRefundable(
            f"{left} paise of sponsorship {s.id}'s community part can be refunded now, "
            f"{want} requested",
            refundable_paise=left,
            requested_paise=want,
        )
    return s, want


async def refund_splits(
    conn: AsyncConnection, payment_id: uuid.UUID, part: int
) -> list[RefundShare] | None:
    """What a refund returning `part` of the community's share takes back from the vendor
    (cashfree.md §14.3: computed from our books and sent, so Cashfree debits the vendor by
    exactly what our journal says): the whole part, from the sponsorship's vendor. None for
    an escrow sponsorship (its order has no split)."""
    s = await repo.by_payment(conn, payment_id)
    if s is None or not s.split or part <= 0:
        return None
    assert s.vendor_id is not None
    return [RefundShare(s.vendor_id, part)]


async def hold_for_refund(
    conn: AsyncConnection, s: Sponsorship, chosen: list[Milestone], refund_id: uuid.UUID
) -> None:
    """The chosen milestones are spoken for by the refund (written after the refund's row):
    no release or other refund takes them while Cashfree works on it."""
    moved = await repo.mark_refunding(conn, s.id, [m.seq for m in chosen], refund_id)
    assert moved == len(chosen), "the sponsorship is locked and the milestones refundable"


async def on_refund_succeeded(
    conn: AsyncConnection,
    *,
    refund_id: uuid.UUID,
    refund_ref: str,
    payment_id: uuid.UUID,
    amount: int,
    fee: int,
    gst: int,
    escrow: int,
    at: datetime,
) -> None:
    """The refund went through: `sponsorship.refunded` (refunds payable from escrow, fee
    revenue and GST payable) and its milestones refunded, once (the refund's own move to
    SUCCESS is the once)."""
    s = await repo.by_payment(conn, payment_id, lock=True)
    if s is None:
        raise LookupError(f"payment {payment_id} is a sponsorship payment with no sponsorship")
    if s.split:
        assert s.vendor_id is not None
        await post_journal(
            conn,
            postings.sponsorship_split_refunded(
                refund_id=refund_id,
                refund_ref=refund_ref,
                payment_id=payment_id,
                sponsorship_id=s.id,
                vendor_id=s.vendor_id,
                amount=amount,
                fee=fee,
                gst=gst,
                part=escrow,
                at=at,
            ),
        )
        await repo.add_split_refunded(conn, s.id, escrow)
        log.info(
            "sponsorship.refunded",
            sponsorship_id=str(s.id),
            refund_id=str(refund_id),
            vendor_id=s.vendor_id,
            split_paise=escrow,
        )
        return
    await post_journal(
        conn,
        postings.sponsorship_refunded(
            refund_id=refund_id,
            refund_ref=refund_ref,
            payment_id=payment_id,
            sponsorship_id=s.id,
            amount=amount,
            fee=fee,
            gst=gst,
            escrow=escrow,
            at=at,
        ),
    )
    returned = await repo.settle_refund(conn, s.id, refund_id)
    if returned != escrow:
        # The refund's row and its milestones were written together: a difference is a bug
        # or a tamper, and nothing may be posted on it (the transaction rolls back).
        raise LookupError(
            f"refund {refund_id} returns {escrow} paise of escrow, its milestones {returned}"
        )
    log.info("sponsorship.refunded", sponsorship_id=str(s.id), refund_id=str(refund_id))


async def on_refund_given_back(
    conn: AsyncConnection, *, refund_id: uuid.UUID, payment_id: uuid.UUID
) -> None:
    """The refund was not made: its milestones are the sponsorship's again."""
    s = await repo.by_payment(conn, payment_id, lock=True)
    if s is not None:
        await repo.undo_refund(conn, s.id, refund_id)


# --- reads -------------------------------------------------------------------------------------


async def view(
    conn: AsyncConnection, s: Sponsorship
) -> tuple[Sponsorship, list[Milestone], Payment]:
    payment = await payments.get(conn, s.payment_id)
    assert payment is not None
    return s, await repo.milestones(conn, s.id), payment


async def is_payer(conn: AsyncConnection, principal: Principal, s: Sponsorship) -> bool:
    return auth.is_sponsor(
        principal, await users.is_subject(conn, s.sponsor_user_id, principal.sub)
    )


async def list_own(
    conn: AsyncConnection,
    principal: Principal,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Sponsorship]:
    user_id = await users.user_id_for(conn, principal.sub)
    if user_id is None:
        return []
    return await repo.list_for(conn, sponsor_user_id=user_id, limit=limit, before=before)


async def list_community(
    conn: AsyncConnection,
    community_id: str,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Sponsorship]:
    return await repo.list_for(conn, community_id=community_id, limit=limit, before=before)
