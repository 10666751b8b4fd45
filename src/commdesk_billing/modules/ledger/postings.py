"""The postings catalogue: every journal the application writes is built here.

Each function is pure: it takes figures (ids, amounts, a timestamp, a reason) and returns a
`Journal`; it reads and writes nothing. Callers decide *whether* to post and take the locks;
this module only says *what* a posting is. Legs are signed, debit > 0 and credit < 0, and
every journal balances per ledger (`Journal` refuses one that does not).

Keys, kinds, descriptions, metadata, leg order and amounts are part of the ledger's record
(wallet legs are hash-chained in the order given, and `verify` matches on kinds and keys), so
they must not change once posted.

Wallet postings are keyed ``wallet:<operation key>``; the others by the payment or refund.

=========================  =======================  =========================================
kind                       function                 legs (ledger CREDITS unless INR)
=========================  =======================  =========================================
grant.<source>             credit_grant             Dr issuance[source]; Cr wallet available
debit                      platform_debit           Dr wallet available; Cr consumed:platform;
                                                    (INR) Dr deferred revenue, Cr platform
                                                    revenue: the drawn basis, if any
expiry                     credits_expired          Dr wallet available; Cr credits:expired;
                                                    (INR) Dr deferred revenue, Cr breakage
                                                    revenue: the expired credits' basis
hold                       hold_placed              Dr wallet available; Cr wallet held
hold.capture               hold_captured            Dr wallet held (all held);
                                                    Cr consumed:platform (captured);
                                                    Cr wallet available (rest, if any);
                                                    (INR) the drawn basis, as for debit
hold.released              hold_released            Dr wallet held; Cr wallet available
hold.expired               hold_released            (same, `expired=True`)
refund.hold                refund_hold_placed       Dr wallet available; Cr wallet held
refund.credits             refund_hold_captured     Dr wallet held; Cr issuance[source] per lot;
                                                    (INR) a lot's last paise of basis, if the
                                                    refund left some (see the function)
refund.release             refund_hold_released     Dr wallet held; Cr wallet available
community.spend            community_spend          Dr wallet available; Cr community earnings
                                                    (net); Cr platform fee credits (fee);
                                                    (INR) Dr deferred revenue (basis); Cr
                                                    platform fee revenue; Cr community payable
community.spend.reversed   community_spend_reversed the spend's legs the other way round, the
                                                    credits into a new lot of the wallet
payment.captured (INR)     payment_captured         Dr gateway clearing; Cr deferred revenue
                                                    (taxable, if any); Cr GST payable (if any)
refund.owed (INR)          refund_owed              Cr refunds payable; Dr deferred revenue
                                                    (taxable, if any); Dr GST payable (if any)
refund.paid (INR)          refund_paid              Dr refunds payable; Cr gateway clearing
partner.share (INR)        partner_share_posted     Dr partner expense; Cr partner payable
partner.share.reversed     partner_share_reversed   Dr partner payable; Cr partner expense
(INR)
sponsorship.funded (INR)   sponsorship_funded       Dr gateway clearing (all paid); Cr
                                                    sponsorship fee revenue (fee); Cr GST
                                                    payable (GST on the fee, if any); Cr
                                                    sponsorship escrow (the community's part)
sponsorship.released       sponsorship_released     Dr sponsorship escrow; Cr community
(INR)                                               payable: one milestone's amount
sponsorship.refunded       sponsorship_refunded     Cr refunds payable (all refunded); Dr
(INR)                                               sponsorship fee revenue, GST payable (its
                                                    fee and GST parts, if any); Dr sponsorship
                                                    escrow (the unreleased part returned)
settlement.created (INR)   settlement_created       Dr payee payable (gross); Cr TDS payable,
                                                    Cr GST TCS payable, Cr payout fee revenue
                                                    (each if any); Cr payouts in transit (net)
settlement.paid (INR)      settlement_paid          Dr payouts in transit; Cr payouts cash
                                                    (net)
settlement.failed (INR)    settlement_failed        settlement.created the other way round:
                                                    the gross back into payable
settlement.reversed (INR)  settlement_reversed      Dr TDS, TCS, fee (each if any), Dr payouts
                                                    cash (net); Cr payee payable (gross): the
                                                    paid money came back, and all of it is
                                                    owed again
sponsorship.split_funded   sponsorship_split_funded Dr gateway clearing (all paid); Cr
(INR)                                               sponsorship fee revenue; Cr GST payable
                                                    (if any); Cr vendor settlements due (the
                                                    community's part, Cashfree's to settle)
sponsorship.split_refunded sponsorship_split_       Cr refunds payable (all refunded); Dr fee
(INR)                      refunded                 revenue, GST payable (its parts, if any);
                                                    Dr vendor settlements due (the vendor's
                                                    part, sent as the refund's split)
split.vendor_settled (INR) vendor_settled           Dr vendor settlements due; Cr gateway
                                                    clearing: one vendor settlement's amount
split.vendor_settlement_   vendor_settlement_       the settled legs the other way round
reversed (INR)             reversed
subscription.paid (INR)    subscription_paid        Dr gateway clearing (all paid); Cr
                                                    subscription revenue (taxable); Cr GST
                                                    payable (if any): an INR period's price
=========================  =======================  =========================================

This module imports only `ledger.model` and the standard library: callers pass plain values
(account ids, wallet ids, lot sources as strings), never another module's records.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from commdesk_billing.modules.ledger.model import (
    CommunityAccounts,
    House,
    Journal,
    Ledger,
    Leg,
    PartnerAccounts,
)

__all__ = [
    "community_spend",
    "community_spend_reversed",
    "credit_grant",
    "credits_expired",
    "hold_captured",
    "hold_placed",
    "hold_released",
    "partner_share_posted",
    "partner_share_reversed",
    "payment_captured",
    "platform_debit",
    "refund_hold_captured",
    "refund_hold_placed",
    "refund_hold_released",
    "refund_owed",
    "refund_paid",
    "settlement_created",
    "settlement_failed",
    "settlement_paid",
    "settlement_reversed",
    "sponsorship_funded",
    "sponsorship_refunded",
    "sponsorship_released",
    "sponsorship_split_funded",
    "sponsorship_split_refunded",
    "subscription_paid",
    "vendor_settled",
    "vendor_settlement_reversed",
    "wallet_key",
]

_C = Ledger.CREDITS
_INR = Ledger.INR


def _recognized(basis_paise: int) -> list[Leg]:
    """Revenue recognized at consumption (DESIGN §10): the drawn lots' basis leaves deferred
    revenue (a credit-normal account, debited) for platform revenue (credited). A negative
    figure moves it back (a refund that took more basis than the lot had left)."""
    if basis_paise == 0:
        return []
    return [
        Leg(House.DEFERRED_REVENUE, _INR, basis_paise),
        Leg(House.PLATFORM_REVENUE, _INR, -basis_paise),
    ]


def wallet_key(operation_key: str) -> str:
    """The journal key of a wallet operation, from the operation's own idempotency key."""
    return f"wallet:{operation_key}"


# --- a wallet's credits ------------------------------------------------------------------


def credit_grant(
    *,
    operation_key: str,
    source: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    credits: int,
    at: datetime,
    reason: str,
) -> Journal:
    """Credits issued to a wallet as a new lot (`source`: purchase, bonus, promotional or
    refund_reversal). Debit the house issuance account of that source, credit the wallet's
    available account: the wallet's balance (a credit-normal account) grows by `credits`."""
    return Journal(
        idempotency_key=wallet_key(operation_key),
        kind=f"grant.{source}",
        created_at=at,
        description=reason,
        legs=(
            Leg(House.ISSUANCE[source], _C, credits),
            Leg(available_account_id, _C, -credits, wallet_id),
        ),
    )


def platform_debit(
    *,
    operation_key: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    credits: int,
    at: datetime,
    reason: str,
    basis_paise: int = 0,
) -> Journal:
    """Credits spent on the platform at once. Debit the wallet's available account, credit
    consumed:platform: the credits are used up; their lots' `basis_paise` is recognized."""
    return Journal(
        idempotency_key=wallet_key(operation_key),
        kind="debit",
        created_at=at,
        description=reason,
        legs=(
            Leg(available_account_id, _C, credits, wallet_id),
            Leg(House.CONSUMED_PLATFORM, _C, -credits),
            *_recognized(basis_paise),
        ),
    )


def credits_expired(
    *,
    operation_key: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    credits: int,
    basis_paise: int,
    at: datetime,
    reason: str,
    lot_id: uuid.UUID,
) -> Journal:
    """A lot's credits forfeited at its expiry (DESIGN §10): debit the wallet's available
    account, credit credits:expired; their unrecognized basis leaves deferred revenue as
    breakage revenue (nobody will consume it)."""
    legs = [
        Leg(available_account_id, _C, credits, wallet_id),
        Leg(House.EXPIRED, _C, -credits),
    ]
    if basis_paise:
        legs += [
            Leg(House.DEFERRED_REVENUE, _INR, basis_paise),
            Leg(House.BREAKAGE_REVENUE, _INR, -basis_paise),
        ]
    return Journal(
        idempotency_key=wallet_key(operation_key),
        kind="expiry",
        created_at=at,
        description=reason,
        legs=tuple(legs),
        metadata={"lot_id": str(lot_id)},
    )


def _inside_wallet(
    operation_key: str,
    kind: str,
    wallet_id: uuid.UUID,
    debit_account_id: uuid.UUID,
    credit_account_id: uuid.UUID,
    credits: int,
    at: datetime,
    reason: str,
    *,
    metadata: dict[str, Any] | None = None,
) -> Journal:
    """Credits moving between a wallet's own two accounts (available and held)."""
    return Journal(
        idempotency_key=wallet_key(operation_key),
        kind=kind,
        created_at=at,
        description=reason,
        legs=(
            Leg(debit_account_id, _C, credits, wallet_id),
            Leg(credit_account_id, _C, -credits, wallet_id),
        ),
        metadata=metadata or {},
    )


def hold_placed(
    *,
    operation_key: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    held_account_id: uuid.UUID,
    credits: int,
    at: datetime,
    reason: str,
) -> Journal:
    """A spend hold: `credits` move inside the wallet from available (debit) to held
    (credit) until captured, released or expired."""
    return _inside_wallet(
        operation_key, "hold", wallet_id, available_account_id, held_account_id, credits, at, reason
    )


def hold_captured(
    *,
    operation_key: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    held_account_id: uuid.UUID,
    held: int,
    captured: int,
    at: datetime,
    reason: str,
    basis_paise: int = 0,
) -> Journal:
    """A spend hold settled: the wallet's held account is debited by everything `held`;
    consumed:platform is credited by what was `captured`, and the rest (held - captured),
    when there is any, goes back to the wallet's available account (credit). The captured
    credits' lots' `basis_paise` is recognized."""
    released = held - captured
    legs = [
        Leg(held_account_id, _C, held, wallet_id),
        Leg(House.CONSUMED_PLATFORM, _C, -captured),
    ]
    if released:
        legs.append(Leg(available_account_id, _C, -released, wallet_id))
    legs += _recognized(basis_paise)
    return Journal(
        idempotency_key=wallet_key(operation_key),
        kind="hold.capture",
        created_at=at,
        description=reason,
        legs=tuple(legs),
    )


def hold_released(
    *,
    operation_key: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    held_account_id: uuid.UUID,
    credits: int,
    at: datetime,
    reason: str,
    expired: bool = False,
) -> Journal:
    """A spend hold voided (kind hold.released) or let lapse (hold.expired, `expired`):
    debit the wallet's held account, credit its available account, by all the hold's
    credits."""
    kind = "hold.expired" if expired else "hold.released"
    return _inside_wallet(
        operation_key, kind, wallet_id, held_account_id, available_account_id, credits, at, reason
    )


# --- a purchase refund's credits ---------------------------------------------------------


def refund_hold_placed(
    *,
    operation_key: str,
    refund_ref: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    held_account_id: uuid.UUID,
    credits: int,
    at: datetime,
    reason: str,
) -> Journal:
    """A refund reserves the credits it takes back: debit the wallet's available account,
    credit its held account."""
    return _inside_wallet(
        operation_key,
        "refund.hold",
        wallet_id,
        available_account_id,
        held_account_id,
        credits,
        at,
        reason,
        metadata={"refund": refund_ref},
    )


def refund_hold_captured(
    *,
    operation_key: str,
    refund_ref: str,
    wallet_id: uuid.UUID,
    held_account_id: uuid.UUID,
    returns: Sequence[tuple[str, int]],
    at: datetime,
    reason: str,
    residual_paise: int = 0,
) -> Journal:
    """The refund went through: the wallet's held account is debited by all it held (the
    sum of `returns`), and each lot's credits are credited back to the issuance account of
    its source, one leg per `(source, credits)` in `returns`, in order.

    `residual_paise` settles the purchase lot's basis where the refund's own taxable value
    (from the paise refunded, `refund_owed`) and the lot's running figure part by a paisa or
    two of rounding: positive, a lot the refund emptied still had basis, recognized now;
    negative, the refund took more than the lot had left, moved back from revenue."""
    held = sum(c for _, c in returns)
    legs = [Leg(held_account_id, _C, held, wallet_id)]
    legs += [Leg(House.ISSUANCE[source], _C, -c) for source, c in returns]
    legs += _recognized(residual_paise)
    return Journal(
        idempotency_key=wallet_key(operation_key),
        kind="refund.credits",
        created_at=at,
        description=reason,
        legs=tuple(legs),
        metadata={"refund": refund_ref},
    )


def refund_hold_released(
    *,
    operation_key: str,
    refund_ref: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    held_account_id: uuid.UUID,
    credits: int,
    at: datetime,
    reason: str,
) -> Journal:
    """The refund did not happen: debit the wallet's held account, credit its available
    account, by all the refund held."""
    return _inside_wallet(
        operation_key,
        "refund.release",
        wallet_id,
        held_account_id,
        available_account_id,
        credits,
        at,
        reason,
        metadata={"refund": refund_ref},
    )


# --- spending in a community ---------------------------------------------------------------


def _community_legs(
    community: CommunityAccounts,
    *,
    fee_credits: int,
    community_credits: int,
    fee_paise: int,
    community_paise: int,
    sign: int,
) -> list[Leg]:
    """What the community and the platform get from a spend (`sign` -1: credited), or give
    back on its reversal (+1: debited). Zero legs are left out."""
    legs = [
        Leg(community.earnings, _C, sign * community_credits),
        Leg(House.FEE_CREDITS, _C, sign * fee_credits),
        Leg(House.PLATFORM_FEE_REVENUE, _INR, sign * fee_paise),
        Leg(community.payable, _INR, sign * community_paise),
    ]
    return [leg for leg in legs if leg.amount]


def community_spend(
    *,
    operation_key: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    community: CommunityAccounts,
    credits: int,
    fee_credits: int,
    basis_paise: int,
    fee_paise: int,
    at: datetime,
    reason: str,
    spend_id: uuid.UUID,
) -> Journal:
    """A member spends `credits` in a community (DESIGN §10), one journal in both ledgers:
    the wallet gives N credits, the community's earnings get N - F and the platform's fee
    credits F; the drawn lots' basis B leaves deferred revenue, f of it becomes platform
    fee revenue and B - f what we owe the community (its payable)."""
    legs = [Leg(available_account_id, _C, credits, wallet_id)]
    if basis_paise:
        legs.append(Leg(House.DEFERRED_REVENUE, _INR, basis_paise))
    legs += _community_legs(
        community,
        fee_credits=fee_credits,
        community_credits=credits - fee_credits,
        fee_paise=fee_paise,
        community_paise=basis_paise - fee_paise,
        sign=-1,
    )
    return Journal(
        idempotency_key=wallet_key(operation_key),
        kind="community.spend",
        created_at=at,
        description=reason,
        legs=tuple(legs),
        metadata={"community_id": community.community_id, "spend_id": str(spend_id)},
    )


def community_spend_reversed(
    *,
    operation_key: str,
    wallet_id: uuid.UUID,
    available_account_id: uuid.UUID,
    community: CommunityAccounts,
    credits: int,
    fee_credits: int,
    basis_paise: int,
    fee_paise: int,
    at: datetime,
    reason: str,
    spend_id: uuid.UUID,
) -> Journal:
    """The spend undone: the community's earnings and the platform's fee credits give the
    credits back to the wallet (into a new lot that keeps the spend's basis), and payable
    and fee revenue go back into deferred revenue. After a settlement the payable may go
    negative: a receivable, netted from the next settlement."""
    legs = _community_legs(
        community,
        fee_credits=fee_credits,
        community_credits=credits - fee_credits,
        fee_paise=fee_paise,
        community_paise=basis_paise - fee_paise,
        sign=1,
    )
    legs.append(Leg(available_account_id, _C, -credits, wallet_id))
    if basis_paise:
        legs.append(Leg(House.DEFERRED_REVENUE, _INR, -basis_paise))
    return Journal(
        idempotency_key=wallet_key(operation_key),
        kind="community.spend.reversed",
        created_at=at,
        description=reason,
        legs=tuple(legs),
        metadata={"community_id": community.community_id, "spend_id": str(spend_id)},
    )


# --- money (INR, paise) ------------------------------------------------------------------


def payment_captured(
    *, payment_id: uuid.UUID, amount: int, taxable: int, gst: int, at: datetime
) -> Journal:
    """Money in from the gateway: gateway clearing (an asset) is debited by `amount`;
    deferred revenue (what we owe as credits until they are consumed) is credited by
    `taxable` and GST payable (owed to the government) by `gst`, each only when non-zero."""
    legs = [Leg(House.GATEWAY_CLEARING, _INR, amount)]
    if taxable:
        legs.append(Leg(House.DEFERRED_REVENUE, _INR, -taxable))
    if gst:
        legs.append(Leg(House.GST_PAYABLE, _INR, -gst))
    return Journal(
        idempotency_key=f"payment:{payment_id}:inr",
        kind="payment.captured",
        created_at=at,
        description=f"payment {payment_id} captured",
        legs=tuple(legs),
        metadata={"payment_id": str(payment_id)},
    )


def _refund_meta(refund_id: uuid.UUID, payment_id: uuid.UUID) -> dict[str, str]:
    return {"refund_id": str(refund_id), "payment_id": str(payment_id)}


def refund_owed(
    *,
    refund_id: uuid.UUID,
    refund_ref: str,
    payment_id: uuid.UUID,
    order_id: str,
    amount: int,
    taxable: int,
    tax: int,
    at: datetime,
) -> Journal:
    """A refund becomes a debt to the buyer: refunds payable is credited by `amount`;
    deferred revenue (what we owed as credits) is debited by `taxable` and GST payable (the
    tax we collected) by `tax`, each only when non-zero."""
    legs = [Leg(House.REFUNDS_PAYABLE, _INR, -amount)]
    if taxable:
        legs.append(Leg(House.DEFERRED_REVENUE, _INR, taxable))
    if tax:
        legs.append(Leg(House.GST_PAYABLE, _INR, tax))
    return Journal(
        idempotency_key=f"refund:{refund_id}:inr",
        kind="refund.owed",
        created_at=at,
        description=f"refund {refund_ref} of order {order_id}",
        legs=tuple(legs),
        metadata=_refund_meta(refund_id, payment_id),
    )


def refund_paid(
    *, refund_id: uuid.UUID, refund_ref: str, payment_id: uuid.UUID, amount: int, at: datetime
) -> Journal:
    """Cashfree pays the refund out of what it holds for us: refunds payable is debited
    (the debt is settled), gateway clearing is credited, by `amount`."""
    return Journal(
        idempotency_key=f"refund:{refund_id}:paid",
        kind="refund.paid",
        created_at=at,
        description=f"refund {refund_ref} paid out by Cashfree",
        legs=(
            Leg(House.REFUNDS_PAYABLE, _INR, amount),
            Leg(House.GATEWAY_CLEARING, _INR, -amount),
        ),
        metadata=_refund_meta(refund_id, payment_id),
    )


# --- a partner's revenue share (INR) ---------------------------------------------------------


# Namespace of journal ids derived from their keys (fixed: ids already posted use it).
_JOURNAL_NS = uuid.UUID("0b5e7a52-6c1d-5f3e-8a9b-4c2d1e0f9a87")


def _journal_id(key: str) -> uuid.UUID:
    """A journal id that follows from its key: the business row naming the journal is
    written after it, and a repeat finds the same id whether or not it posted."""
    return uuid.uuid5(_JOURNAL_NS, key)


def partner_share_posted(
    *,
    payment_id: uuid.UUID,
    partner: PartnerAccounts,
    share_paise: int,
    share_bps: int,
    at: datetime,
) -> Journal:
    """A credited purchase by a user the partner brought (DESIGN §11): its share of the
    purchase's taxable value is an expense of ours (partner expense, debit-normal, debited)
    and a debt to the partner (its payable, credited). Never deferred revenue."""
    key = f"partner:share:{payment_id}"
    return Journal(
        id=_journal_id(key),
        idempotency_key=key,
        kind="partner.share",
        created_at=at,
        description=f"partner {partner.partner_id} share of payment {payment_id}",
        legs=(
            Leg(House.PARTNER_EXPENSE, _INR, share_paise),
            Leg(partner.payable, _INR, -share_paise),
        ),
        metadata={
            "partner_id": partner.partner_id,
            "payment_id": str(payment_id),
            "share_bps": share_bps,
        },
    )


def partner_share_reversed(
    *,
    refund_id: uuid.UUID,
    payment_id: uuid.UUID,
    partner: PartnerAccounts,
    share_paise: int,
    at: datetime,
) -> Journal:
    """A refund of that purchase takes its proportion of the share back: the partner's
    payable is debited, the expense credited. After a settlement the payable may go
    negative (a receivable, netted from the next settlement)."""
    key = f"partner:share-reversal:{refund_id}"
    return Journal(
        id=_journal_id(key),
        idempotency_key=key,
        kind="partner.share.reversed",
        created_at=at,
        description=f"partner {partner.partner_id} share of refund {refund_id} taken back",
        legs=(
            Leg(partner.payable, _INR, share_paise),
            Leg(House.PARTNER_EXPENSE, _INR, -share_paise),
        ),
        metadata={
            "partner_id": partner.partner_id,
            "payment_id": str(payment_id),
            "refund_id": str(refund_id),
        },
    )


# --- a sponsor's payment to a community (INR) ------------------------------------------------


def sponsorship_funded(
    *,
    sponsorship_id: uuid.UUID,
    payment_id: uuid.UUID,
    community_id: str,
    total: int,
    fee: int,
    gst: int,
    escrow: int,
    at: datetime,
) -> Journal:
    """A sponsor's payment arrived (DESIGN §11): gateway clearing (an asset) is debited by
    all the sponsor paid; the platform's fee is revenue, the GST on it is owed to the
    government, and the community's part is held in escrow (never our revenue) until its
    milestones are released. `total` = fee + gst + escrow, or the journal does not balance."""
    key = f"sponsorship:{sponsorship_id}:funded"
    legs = [
        Leg(House.GATEWAY_CLEARING, _INR, total),
        Leg(House.SPONSORSHIP_FEE_REVENUE, _INR, -fee),
    ]
    if gst:
        legs.append(Leg(House.GST_PAYABLE, _INR, -gst))
    legs.append(Leg(House.SPONSORSHIP_ESCROW, _INR, -escrow))
    return Journal(
        id=_journal_id(key),
        idempotency_key=key,
        kind="sponsorship.funded",
        created_at=at,
        description=f"sponsorship {sponsorship_id} of community {community_id} paid",
        legs=tuple(legs),
        metadata={
            "sponsorship_id": str(sponsorship_id),
            "payment_id": str(payment_id),
            "community_id": community_id,
        },
    )


def sponsorship_released(
    *,
    sponsorship_id: uuid.UUID,
    seq: int,
    community: CommunityAccounts,
    amount: int,
    at: datetime,
) -> Journal:
    """A delivered milestone approved: its amount leaves the escrow (debited) for the
    community's payable (credited), where settlements pay it out."""
    key = f"sponsorship:{sponsorship_id}:release:{seq}"
    return Journal(
        id=_journal_id(key),
        idempotency_key=key,
        kind="sponsorship.released",
        created_at=at,
        description=f"sponsorship {sponsorship_id} milestone {seq} released to community "
        f"{community.community_id}",
        legs=(
            Leg(House.SPONSORSHIP_ESCROW, _INR, amount),
            Leg(community.payable, _INR, -amount),
        ),
        metadata={
            "sponsorship_id": str(sponsorship_id),
            "community_id": community.community_id,
            "milestone": seq,
        },
    )


def sponsorship_refunded(
    *,
    refund_id: uuid.UUID,
    refund_ref: str,
    payment_id: uuid.UUID,
    sponsorship_id: uuid.UUID,
    amount: int,
    fee: int,
    gst: int,
    escrow: int,
    at: datetime,
) -> Journal:
    """A refund of a sponsorship becomes a debt to the sponsor (refunds payable, credited by
    `amount`), taken from what the sponsorship put in: the escrow it still held for the
    community, and the fee and GST in proportion (debited, each only when non-zero). The
    refund's `refund:<id>:inr` journal, as a purchase refund's `refund_owed` is; Cashfree
    then pays it (`refund_paid`)."""
    legs = [Leg(House.REFUNDS_PAYABLE, _INR, -amount)]
    if fee:
        legs.append(Leg(House.SPONSORSHIP_FEE_REVENUE, _INR, fee))
    if gst:
        legs.append(Leg(House.GST_PAYABLE, _INR, gst))
    legs.append(Leg(House.SPONSORSHIP_ESCROW, _INR, escrow))
    return Journal(
        idempotency_key=f"refund:{refund_id}:inr",
        kind="sponsorship.refunded",
        created_at=at,
        description=f"refund {refund_ref} of sponsorship {sponsorship_id}",
        legs=tuple(legs),
        metadata={**_refund_meta(refund_id, payment_id), "sponsorship_id": str(sponsorship_id)},
    )


# --- settlements and payouts (INR) -----------------------------------------------------------


def _withheld(tds: int, tcs: int, fee: int, sign: int) -> list[Leg]:
    """What a settlement keeps back of the gross: credited (`sign` -1) when it is made,
    debited (+1) when it is undone. Zero legs are left out."""
    legs = [
        Leg(House.TDS_PAYABLE, _INR, sign * tds),
        Leg(House.TCS_PAYABLE, _INR, sign * tcs),
        Leg(House.PAYOUT_FEE_REVENUE, _INR, sign * fee),
    ]
    return [leg for leg in legs if leg.amount]


def _settlement_journal(
    settlement_id: uuid.UUID, step: str, payee: str, legs: list[Leg], at: datetime, **meta: Any
) -> Journal:
    key = f"settlement:{settlement_id}:{step}"
    return Journal(
        id=_journal_id(key),
        idempotency_key=key,
        kind=f"settlement.{step}",
        created_at=at,
        description=f"settlement {settlement_id} of {payee}: {step}",
        legs=tuple(legs),
        metadata={"settlement_id": str(settlement_id), "payee": payee, **meta},
    )


def settlement_created(
    *,
    settlement_id: uuid.UUID,
    payee: str,
    payable_account_id: uuid.UUID,
    gross: int,
    tds: int,
    tcs: int,
    fee: int,
    net: int,
    at: datetime,
) -> Journal:
    """A settlement takes `gross` out of the payee's payable (debited): the deductions go to
    what we owe the government (TDS under 194-O, GST TCS under section 52) and the payout
    fee to our revenue, the `net` into payouts in transit until Cashfree pays it.
    `payee` names the payable account (`community:<id>:payable`)."""
    legs = [
        Leg(payable_account_id, _INR, gross),
        *_withheld(tds, tcs, fee, -1),
        Leg(House.PAYOUTS_IN_TRANSIT, _INR, -net),
    ]
    return _settlement_journal(settlement_id, "created", payee, legs, at)


def settlement_paid(
    *, settlement_id: uuid.UUID, payee: str, net: int, transfer_id: str, utr: str, at: datetime
) -> Journal:
    """Cashfree paid the settlement's transfer: in transit is debited, the cash at Cashfree
    Payouts credited, by `net`."""
    legs = [Leg(House.PAYOUTS_IN_TRANSIT, _INR, net), Leg(House.PAYOUTS_CASH, _INR, -net)]
    return _settlement_journal(
        settlement_id, "paid", payee, legs, at, transfer_id=transfer_id, utr=utr
    )


def settlement_failed(
    *,
    settlement_id: uuid.UUID,
    payee: str,
    payable_account_id: uuid.UUID,
    gross: int,
    tds: int,
    tcs: int,
    fee: int,
    net: int,
    at: datetime,
    reason: str,
) -> Journal:
    """The settlement will not be paid: `settlement_created` undone, the gross owed to the
    payee again (its payable credited)."""
    legs = [
        Leg(payable_account_id, _INR, -gross),
        *_withheld(tds, tcs, fee, 1),
        Leg(House.PAYOUTS_IN_TRANSIT, _INR, net),
    ]
    return _settlement_journal(settlement_id, "failed", payee, legs, at, reason=reason)


def settlement_reversed(
    *,
    settlement_id: uuid.UUID,
    payee: str,
    payable_account_id: uuid.UUID,
    gross: int,
    tds: int,
    tcs: int,
    fee: int,
    net: int,
    at: datetime,
    reason: str,
) -> Journal:
    """A paid settlement's money came back from the beneficiary's bank: the cash at Cashfree
    Payouts is debited by `net`, the deductions and fee are undone, and the gross is owed to
    the payee again (its payable credited). `settlement_created` and `settlement_paid`
    undone in one journal."""
    legs = [
        Leg(payable_account_id, _INR, -gross),
        *_withheld(tds, tcs, fee, 1),
        Leg(House.PAYOUTS_CASH, _INR, net),
    ]
    return _settlement_journal(settlement_id, "reversed", payee, legs, at, reason=reason)


# --- a sponsorship on the split path, and vendor settlements (INR) ----------------------------


def sponsorship_split_funded(
    *,
    sponsorship_id: uuid.UUID,
    payment_id: uuid.UUID,
    community_id: str,
    vendor_id: str,
    total: int,
    fee: int,
    gst: int,
    part: int,
    at: datetime,
) -> Journal:
    """A sponsor's payment on the split path arrived (cashfree.md §14.1): gateway clearing
    is debited by all the sponsor paid, as on the escrow path, but the community's part is
    the vendor's at Cashfree, which settles it to the vendor out of what it holds for us:
    vendor settlements due (credit-normal) is credited by it, never escrow or our revenue.
    The same key as the escrow path's funding: a sponsorship is funded once, one way."""
    key = f"sponsorship:{sponsorship_id}:funded"
    legs = [
        Leg(House.GATEWAY_CLEARING, _INR, total),
        Leg(House.SPONSORSHIP_FEE_REVENUE, _INR, -fee),
    ]
    if gst:
        legs.append(Leg(House.GST_PAYABLE, _INR, -gst))
    legs.append(Leg(House.VENDOR_SETTLEMENTS_DUE, _INR, -part))
    return Journal(
        id=_journal_id(key),
        idempotency_key=key,
        kind="sponsorship.split_funded",
        created_at=at,
        description=f"sponsorship {sponsorship_id} of community {community_id} paid, split to "
        f"vendor {vendor_id}",
        legs=tuple(legs),
        metadata={
            "sponsorship_id": str(sponsorship_id),
            "payment_id": str(payment_id),
            "community_id": community_id,
            "vendor_id": vendor_id,
        },
    )


def sponsorship_split_refunded(
    *,
    refund_id: uuid.UUID,
    refund_ref: str,
    payment_id: uuid.UUID,
    sponsorship_id: uuid.UUID,
    vendor_id: str,
    amount: int,
    fee: int,
    gst: int,
    part: int,
    at: datetime,
) -> Journal:
    """A refund of a split sponsorship (its `refund:<id>:inr` journal): a debt to the
    sponsor (refunds payable, credited by `amount`) taken from the fee and GST in proportion
    and from the vendor's part, which Cashfree debits from the vendor's balance as the
    refund's `refund_splits` said (vendor settlements due, debited by `part`). Should the
    vendor have been settled already, the account goes below what is due for it: an amount
    recoverable from the vendor, which Cashfree nets from its next settlement."""
    legs = [Leg(House.REFUNDS_PAYABLE, _INR, -amount)]
    if fee:
        legs.append(Leg(House.SPONSORSHIP_FEE_REVENUE, _INR, fee))
    if gst:
        legs.append(Leg(House.GST_PAYABLE, _INR, gst))
    legs.append(Leg(House.VENDOR_SETTLEMENTS_DUE, _INR, part))
    return Journal(
        idempotency_key=f"refund:{refund_id}:inr",
        kind="sponsorship.split_refunded",
        created_at=at,
        description=f"refund {refund_ref} of split sponsorship {sponsorship_id}",
        legs=tuple(legs),
        metadata={
            **_refund_meta(refund_id, payment_id),
            "sponsorship_id": str(sponsorship_id),
            "vendor_id": vendor_id,
        },
    )


def _vendor_settlement(
    step: str,
    kind: str,
    text: str,
    settlement_id: str,
    vendor_id: str,
    community_id: str,
    due: int,
    at: datetime,
) -> Journal:
    """One vendor settlement step: `due` on vendor settlements due, the other way on gateway
    clearing (debit-first leg order, as posted since the split path landed)."""
    key = f"vendor-settlement:{settlement_id}:{step}"
    due_leg = Leg(House.VENDOR_SETTLEMENTS_DUE, _INR, due)
    clearing_leg = Leg(House.GATEWAY_CLEARING, _INR, -due)
    return Journal(
        id=_journal_id(key),
        idempotency_key=key,
        kind=kind,
        created_at=at,
        description=text,
        legs=(due_leg, clearing_leg) if step == "settled" else (clearing_leg, due_leg),
        metadata={
            "settlement_id": settlement_id,
            "vendor_id": vendor_id,
            "community_id": community_id,
        },
    )


def vendor_settled(
    *, settlement_id: str, vendor_id: str, community_id: str, amount: int, at: datetime
) -> Journal:
    """Cashfree settled a vendor (VENDOR_SETTLEMENT_SUCCESS): what was due to it leaves
    vendor settlements due (debited) and gateway clearing (credited: Cashfree paid it out of
    what it held). Keyed by Cashfree's settlement id, so a duplicate posts nothing."""
    return _vendor_settlement(
        "settled",
        "split.vendor_settled",
        f"vendor {vendor_id} (community {community_id}) settled by Cashfree, "
        f"settlement {settlement_id}",
        settlement_id,
        vendor_id,
        community_id,
        amount,
        at,
    )


def vendor_settlement_reversed(
    *, settlement_id: str, vendor_id: str, community_id: str, amount: int, at: datetime
) -> Journal:
    """A settlement Cashfree reversed after SUCCESS (VENDOR_SETTLEMENT_REVERSED): the money
    is back with Cashfree and due to the vendor again; the settled legs the other way."""
    return _vendor_settlement(
        "reversed",
        "split.vendor_settlement_reversed",
        f"vendor {vendor_id} (community {community_id}) settlement "
        f"{settlement_id} reversed by Cashfree",
        settlement_id,
        vendor_id,
        community_id,
        -amount,
        at,
    )


# --- a subscription period paid on a mandate (INR) -------------------------------------------


def subscription_paid(
    *,
    payment_id: uuid.UUID,
    subscription_id: uuid.UUID,
    period_number: int,
    amount: int,
    taxable: int,
    gst: int,
    at: datetime,
) -> Journal:
    """An INR subscription period's price arrived on the member's mandate: gateway clearing
    (an asset) is debited by all that was paid; the platform's supply (the period's service,
    net of GST) is subscription revenue, the GST is owed to the government. Keyed by the
    payment, as a purchase's capture is (`payment:<id>:inr`): one payment is posted once,
    whichever way. `amount` = taxable + gst, or the journal does not balance."""
    key = f"payment:{payment_id}:inr"
    legs = [
        Leg(House.GATEWAY_CLEARING, _INR, amount),
        Leg(House.SUBSCRIPTION_REVENUE, _INR, -taxable),
    ]
    if gst:
        legs.append(Leg(House.GST_PAYABLE, _INR, -gst))
    return Journal(
        id=_journal_id(key),
        idempotency_key=key,
        kind="subscription.paid",
        created_at=at,
        description=f"subscription {subscription_id} period {period_number} paid",
        legs=tuple(legs),
        metadata={
            "payment_id": str(payment_id),
            "subscription_id": str(subscription_id),
            "period": period_number,
        },
    )


def subscription_refund_owed(
    *,
    refund_id: uuid.UUID,
    refund_ref: str,
    payment_id: uuid.UUID,
    subscription_id: uuid.UUID,
    period_number: int,
    amount: int,
    taxable: int,
    tax: int,
    at: datetime,
) -> Journal:
    """A refund of an INR subscription period's payment becomes a debt to the member:
    refunds payable is credited by `amount`; subscription revenue (what `subscription.paid`
    recognized) is debited by `taxable` and GST payable by `tax`, each only when non-zero.
    Keyed as every refund's debt (`refund:<id>:inr`); `refund_paid` settles it."""
    legs = [Leg(House.REFUNDS_PAYABLE, _INR, -amount)]
    if taxable:
        legs.append(Leg(House.SUBSCRIPTION_REVENUE, _INR, taxable))
    if tax:
        legs.append(Leg(House.GST_PAYABLE, _INR, tax))
    return Journal(
        idempotency_key=f"refund:{refund_id}:inr",
        kind="subscription.refund_owed",
        created_at=at,
        description=(
            f"refund {refund_ref} of subscription {subscription_id} period {period_number}"
        ),
        legs=tuple(legs),
        metadata={
            **_refund_meta(refund_id, payment_id),
            "subscription_id": str(subscription_id),
            "period": period_number,
        },
    )
