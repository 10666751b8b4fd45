"""Ledger vocabulary: ledgers, legs, journals and the house accounts' fixed ids."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from commdesk_billing.errors import LedgerInvariantError


class Ledger(StrEnum):
    INR = "INR"  # amounts in paise
    CREDITS = "CREDITS"  # amounts in credits


# Must match the namespace frozen in migration 0001.
_HOUSE_NS = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")


def house_account_id(code: str) -> uuid.UUID:
    return uuid.uuid5(_HOUSE_NS, code)


class House:
    """House (platform) accounts. They keep no balance row: balances are sums of entries."""

    ISSUANCE = {
        "purchase": house_account_id("credits:issuance:purchase"),
        "bonus": house_account_id("credits:issuance:bonus"),
        "promotional": house_account_id("credits:issuance:promotional"),
        "refund_reversal": house_account_id("credits:issuance:refund_reversal"),
    }
    CONSUMED_PLATFORM = house_account_id("credits:consumed:platform")
    FEE_CREDITS = house_account_id("credits:platform_fee")  # migration 0008
    EXPIRED = house_account_id("credits:expired")
    GATEWAY_CLEARING = house_account_id("inr:gateway_clearing")
    DEFERRED_REVENUE = house_account_id("inr:deferred_revenue")
    GST_PAYABLE = house_account_id("inr:gst_payable")
    REFUNDS_PAYABLE = house_account_id("inr:refunds_payable")
    # Revenue recognized when credits are consumed on the platform (DESIGN §10).
    PLATFORM_REVENUE = house_account_id("inr:platform_revenue")
    PLATFORM_FEE_REVENUE = house_account_id("inr:platform_fee_revenue")
    BREAKAGE_REVENUE = house_account_id("inr:breakage_revenue")
    # Partners' revenue share (DESIGN §11): an expense, debit-normal (migration 0009).
    PARTNER_EXPENSE = house_account_id("inr:partner_expense")
    # Sponsor payments (DESIGN §11, migration 0012): what we hold for communities until a
    # milestone is released (credit-normal), and the platform's fee on sponsorships.
    SPONSORSHIP_ESCROW = house_account_id("inr:sponsorship_escrow")
    SPONSORSHIP_FEE_REVENUE = house_account_id("inr:sponsorship_fee_revenue")
    # Settlements and payouts (DESIGN §11, migration 0011): what a settlement withholds
    # (TDS under 194-O, GST TCS under section 52), the payout fee it charges, the net on its
    # way to the payee, and the cash at Cashfree Payouts it is paid from (an asset,
    # debit-normal: paying out credits it).
    TDS_PAYABLE = house_account_id("inr:tds_payable_194o")
    TCS_PAYABLE = house_account_id("inr:gst_tcs_payable")
    PAYOUT_FEE_REVENUE = house_account_id("inr:payout_fee_revenue")
    PAYOUTS_IN_TRANSIT = house_account_id("inr:payouts_in_transit")
    PAYOUTS_CASH = house_account_id("inr:cashfree_payouts_cash")
    # Easy Split (migration 0013): what Cashfree collected for vendors (communities) and
    # settles to them directly; credit-normal, never ours.
    VENDOR_SETTLEMENTS_DUE = house_account_id("inr:vendor_settlements_due")
    # INR subscription periods paid on a mandate (migration 0020), net of GST.
    SUBSCRIPTION_REVENUE = house_account_id("inr:subscription_revenue")


@dataclass(frozen=True)
class Leg:
    account_id: uuid.UUID
    ledger: Ledger
    amount: int  # signed: debit > 0, credit < 0
    # Set for a wallet's own accounts: such legs join the wallet's hash chain.
    wallet_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Journal:
    idempotency_key: str
    kind: str
    legs: tuple[Leg, ...]
    created_at: datetime
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.legs) < 2:
            raise LedgerInvariantError(f"journal {self.idempotency_key} has fewer than 2 legs")
        totals: dict[Ledger, int] = defaultdict(int)
        for leg in self.legs:
            if leg.amount == 0 or isinstance(leg.amount, bool) or not isinstance(leg.amount, int):
                raise LedgerInvariantError(
                    f"journal {self.idempotency_key} has a zero or non-integer leg"
                )
            totals[leg.ledger] += leg.amount
        unbalanced = {k: v for k, v in totals.items() if v != 0}
        if unbalanced:
            raise LedgerInvariantError(
                f"journal {self.idempotency_key} does not balance: {unbalanced}"
            )


def transfer(
    *,
    debit: uuid.UUID,
    credit: uuid.UUID,
    ledger: Ledger,
    amount: int,
    debit_wallet: uuid.UUID | None = None,
    credit_wallet: uuid.UUID | None = None,
) -> tuple[Leg, Leg]:
    """The common two-leg case: `amount` moves from `credit` to `debit`."""
    if amount <= 0:
        raise LedgerInvariantError("a transfer amount must be positive")
    return (Leg(debit, ledger, amount, debit_wallet), Leg(credit, ledger, -amount, credit_wallet))


@dataclass(frozen=True)
class CommunityAccounts:
    """A community's own accounts (DESIGN §10): what it earned in credits, and what we owe
    it in paise. Like house accounts they keep no balance row (a popular community is in
    every one of its members' spends); their ids follow from the community's id."""

    community_id: str
    earnings: uuid.UUID
    payable: uuid.UUID

    @classmethod
    def of(cls, community_id: str) -> CommunityAccounts:
        return cls(
            community_id,
            house_account_id(f"community:{community_id}:earnings"),
            house_account_id(f"community:{community_id}:payable"),
        )


@dataclass(frozen=True)
class PartnerAccounts:
    """A partner's own account (DESIGN §11): what we owe it of its revenue share, in paise.
    No balance row (every attributed purchase touches it); its id follows from the
    partner's id."""

    partner_id: str
    payable: uuid.UUID

    @classmethod
    def of(cls, partner_id: str) -> PartnerAccounts:
        return cls(partner_id, house_account_id(f"partner:{partner_id}:payable"))
