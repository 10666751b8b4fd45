"""Community economy records, as read from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FeePlan:
    community_id: str
    version: int  # 0: no plan of its own, the configured default
    fee_bps: int
    reason: str
    created_by: str | None
    created_at: datetime | None


@dataclass(frozen=True)
class Spend:
    id: uuid.UUID
    community_id: str
    wallet_id: uuid.UUID
    user_external_id: str
    credits: int
    fee_credits: int
    community_credits: int
    basis_paise: int
    fee_paise: int
    community_paise: int
    fee_bps: int
    fee_plan_version: int
    reason: str
    reference: str | None
    idempotency_key: str
    journal_id: uuid.UUID
    transaction_id: uuid.UUID
    created_by: str
    created_at: datetime
    reversed_at: datetime | None = None
    reversal_reason: str | None = None


@dataclass(frozen=True)
class Earnings:
    community_id: str
    earned_credits: int  # net of fees and of reversals
    fee_credits: int
    payable_paise: int  # what we owe it (settlements will take this down)
    basis_paise: int
    fee_paise: int
    spends: int
    reversals: int
