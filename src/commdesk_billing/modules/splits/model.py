"""Easy Split vendors and vendor settlements, as read from the database."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


def vendor_id_for(community_id: str) -> str:
    """A community's vendor id at Cashfree: derived from its id, so every registration and
    every retry names the same vendor. Cashfree takes `[A-Za-z0-9_]`, at most 50; community
    ids may hold `-` (so `c-1` and `c_1` must not meet): a digest of the id, not the id."""
    return "cdbc_" + hashlib.sha256(community_id.encode()).hexdigest()[:40]


class VendorStatus(StrEnum):
    """Cashfree's vendor statuses (cashfree.md §6.1). Anything else is kept as said."""

    in_bene_creation = "IN_BENE_CREATION"
    active = "ACTIVE"
    blocked = "BLOCKED"
    deleted = "DELETED"


@dataclass(frozen=True)
class SplitVendor:
    community_id: str
    vendor_id: str
    payee_id: uuid.UUID
    account_id: uuid.UUID
    method: str
    account_mask: str
    name: str
    email: str
    phone: str
    account_type: str
    business_type: str
    pan_mask: str
    gstin: str | None
    status: str  # as Cashfree last said it
    remarks: str | None
    status_checked_at: datetime
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        """Only an ACTIVE vendor is given split sponsorships (Cashfree refuses an order
        split to any other, cashfree.md §14.1)."""
        return self.status == VendorStatus.active

    @classmethod
    def from_row(cls, row: Any) -> SplitVendor:
        return cls(**dict(row._asdict()))


class SettlementStatus(StrEnum):
    created = "CREATED"
    success = "SUCCESS"
    failed = "FAILED"
    reversed = "REVERSED"


@dataclass(frozen=True)
class VendorSettlement:
    settlement_id: str
    vendor_id: str
    community_id: str
    amount_paise: int
    status: SettlementStatus
    utr: str | None
    reason: str | None
    settled_journal_id: uuid.UUID | None
    reversed_journal_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> VendorSettlement:
        data = dict(row._asdict())
        data["status"] = SettlementStatus(data["status"])
        return cls(**data)
