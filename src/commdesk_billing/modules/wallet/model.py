"""Wallet domain records, as read from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class LotSource(StrEnum):
    purchase = "purchase"
    bonus = "bonus"
    promotional = "promotional"
    refund_reversal = "refund_reversal"
    spend_reversal = "spend_reversal"  # credits a reversed community spend gave back


class TxnType(StrEnum):
    purchase = "purchase"
    bonus = "bonus"
    promotional = "promotional"
    refund_reversal = "refund_reversal"
    debit = "debit"
    hold = "hold"
    capture = "capture"
    release = "release"
    refund = "refund"
    expiry = "expiry"
    community_spend = "community_spend"
    community_spend_reversal = "community_spend_reversal"


class HoldStatus(StrEnum):
    active = "active"
    captured = "captured"
    released = "released"
    expired = "expired"


@dataclass(frozen=True)
class Wallet:
    id: uuid.UUID
    owner_type: str
    owner_id: uuid.UUID
    available_credits: int
    locked_credits: int
    pending_credits: int
    lifetime_purchased_credits: int
    auto_recharge_enabled: bool
    auto_recharge_threshold: int
    available_account_id: uuid.UUID
    held_account_id: uuid.UUID
    chain_seq: int
    chain_head: bytes | None
    statement_seq: int
    created_at: datetime
    updated_at: datetime
    # The effective auto-recharge level (autorecharge keeps it); None: auto-recharge off.
    auto_recharge_trigger: int | None = None


@dataclass(frozen=True)
class StatementLine:
    id: uuid.UUID
    wallet_id: uuid.UUID
    seq: int
    transaction_type: TxnType
    credits: int
    balance_before: int
    balance_after: int
    source: str
    source_id: str | None
    metadata: dict[str, Any]
    idempotency_key: str
    journal_id: uuid.UUID
    hold_id: uuid.UUID | None
    lot_id: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True)
class Hold:
    id: uuid.UUID
    wallet_id: uuid.UUID
    credits: int
    captured_credits: int
    released_credits: int
    status: HoldStatus
    reason: str
    idempotency_key: str
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None
    created_by: str | None = None
    # "refund": credits a refund in flight takes back; settled only by that refund.
    purpose: str = "spend"


@dataclass(frozen=True)
class Lot:
    id: uuid.UUID
    wallet_id: uuid.UUID
    source: LotSource
    credits_granted: int
    credits_remaining: int
    credits_refunded: int
    paid_paise: int
    taxable_paise: int
    source_ref: str | None
    granted_at: datetime
    expires_at: datetime | None
    # Set aside for a refund in flight: part of credits_remaining, but not drawable.
    credits_reserved: int = 0
    # Of taxable_paise: recognized as revenue by consumption, and gone with refunds.
    recognized_paise: int = 0
    refunded_paise: int = 0

    @property
    def drawable(self) -> int:
        return self.credits_remaining - self.credits_reserved

    @property
    def unrecognized_paise(self) -> int:
        """Basis still in deferred revenue."""
        return self.taxable_paise - self.recognized_paise - self.refunded_paise


@dataclass(frozen=True)
class BalanceReport:
    """What `syncBalance` found: the stored row against what the ledger says."""

    wallet_id: uuid.UUID
    row_available: int
    row_locked: int
    ledger_available: int
    ledger_locked: int
    lots_remaining: int
    active_holds: int
    statement_balance: int | None

    @property
    def drift(self) -> dict[str, int]:
        found = {
            "available": self.row_available - self.ledger_available,
            "locked": self.row_locked - self.ledger_locked,
            "lots": (self.row_available + self.row_locked) - self.lots_remaining,
            "holds": self.row_locked - self.active_holds,
            "statement": (
                self.row_available - self.statement_balance
                if self.statement_balance is not None
                else self.row_available
            ),
        }
        return {k: v for k, v in found.items() if v != 0}

    @property
    def consistent(self) -> bool:
        return not self.drift
