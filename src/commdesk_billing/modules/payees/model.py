"""Payee records, as read from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class PayeeKind(StrEnum):
    community = "community"  # subject_id: the community's id in CommDesk's MongoDB
    partner = "partner"  # subject_id: the partner's id (`partners`)


class PayeeStatus(StrEnum):
    active = "active"
    suspended = "suspended"  # never paid out while suspended; its payable keeps accruing


class PayoutMethod(StrEnum):
    bank = "bank"
    upi = "upi"


class Verification(StrEnum):
    pending = "pending"
    verified = "verified"
    failed = "failed"


@dataclass(frozen=True)
class Payee:
    id: uuid.UUID
    kind: PayeeKind
    subject_id: str
    display_name: str
    status: PayeeStatus
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def payable_code(self) -> str:
        """The ledger account that holds what we owe this payee."""
        return f"{self.kind.value}:{self.subject_id}:payable"


@dataclass(frozen=True)
class PayoutTarget:
    """Where a settlement of this payee may be paid, now: its current account, verified,
    with a Cashfree beneficiary, past its cooling-off. Nothing else is ever paid."""

    payee: Payee
    account_id: uuid.UUID
    account_version: int
    method: PayoutMethod
    account_mask: str
    beneficiary_id: str
