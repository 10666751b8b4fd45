"""Settlement records, and the terms a settlement is computed on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class SettlementStatus(StrEnum):
    pending = "pending"  # committed with its journal; its first transfer not yet sent
    processing = "processing"  # a transfer is at Cashfree (or being retried)
    paid = "paid"  # Cashfree paid it (UTR); a reversal may still follow
    failed = "failed"  # never paid: its gross is back in payable
    reversed = "reversed"  # paid, then sent back: its gross is back in payable


OPEN = frozenset({SettlementStatus.pending, SettlementStatus.processing})
ENDED = frozenset({SettlementStatus.failed, SettlementStatus.reversed})


class AttemptStatus(StrEnum):
    new = "new"  # recorded; the create call may or may not have reached Cashfree
    sent = "sent"  # Cashfree has it, in flight
    success = "success"
    failed = "failed"  # FAILED or REJECTED at Cashfree: terminal
    reversed = "reversed"


@dataclass(frozen=True)
class Terms:
    """The settings a settlement is computed on (recorded on its row)."""

    reserve_bps: int
    reserve_days: int
    tds_bps: int
    tcs_bps: int
    fee_paise: int
    minimum_paise: int


@dataclass(frozen=True)
class Figures:
    payable_paise: int  # earned up to the cut-off less what earlier settlements took
    reserves_held_paise: int  # earlier settlements' reserves not yet released
    reserve_paise: int  # this settlement's reserve, held in payable until reserve_until
    gross_paise: int  # what leaves payable
    tds_paise: int
    tcs_paise: int
    fee_paise: int
    net_paise: int  # what Cashfree pays


@dataclass(frozen=True)
class Settlement:
    id: uuid.UUID
    payee_id: uuid.UUID
    payable_code: str
    period: str
    cut_off: datetime
    account_id: uuid.UUID
    beneficiary_id: str
    account_mask: str
    transfer_mode: str
    payable_paise: int
    reserves_held_paise: int
    reserve_bps: int
    reserve_paise: int
    reserve_until: datetime
    gross_paise: int
    tds_bps: int
    tds_paise: int
    tcs_bps: int
    tcs_paise: int
    fee_paise: int
    net_paise: int
    status: SettlementStatus
    failure_code: str | None
    failure_reason: str | None
    utr: str | None
    journal_id: uuid.UUID
    created_by: str
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None
    ended_at: datetime | None
    synced_at: datetime


@dataclass(frozen=True)
class Attempt:
    id: uuid.UUID
    settlement_id: uuid.UUID
    attempt: int
    transfer_id: str
    amount_paise: int
    status: AttemptStatus
    cf_transfer_id: str | None
    cf_status: str | None
    status_code: str | None
    utr: str | None
    created_at: datetime
    updated_at: datetime


def transfer_id_of(settlement_id: uuid.UUID, attempt: int) -> str:
    """`stl<32 hex>a<n>`: 37 characters of letters and digits, within Cashfree's 40 and its
    alphabet; one per attempt, so a retried payout can never reuse a failed one's id."""
    return f"stl{settlement_id.hex}a{attempt}"
