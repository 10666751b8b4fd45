"""Partner records, as read from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class PartnerStatus(StrEnum):
    active = "active"
    inactive = "inactive"  # earns nothing on purchases credited from then on


@dataclass(frozen=True)
class Partner:
    id: str
    name: str
    share_bps: int
    status: PartnerStatus
    version: int  # of its terms (`partner_terms`)
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Attribution:
    id: uuid.UUID
    user_external_id: str
    partner_id: str
    valid_from: datetime
    valid_until: datetime | None  # None: open-ended
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Share:
    id: uuid.UUID
    payment_id: uuid.UUID
    partner_id: str
    attribution_id: uuid.UUID
    terms_version: int
    taxable_paise: int
    share_bps: int
    share_paise: int
    journal_id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True)
class Reversal:
    id: uuid.UUID
    refund_id: uuid.UUID
    share_id: uuid.UUID
    refund_taxable_paise: int
    share_paise: int
    journal_id: uuid.UUID | None  # None: the refund's proportion rounded to nothing
    created_at: datetime


@dataclass(frozen=True)
class Totals:
    shares: int
    reversals: int
    earned_paise: int
    reversed_paise: int

    @property
    def payable_paise(self) -> int:
        return self.earned_paise - self.reversed_paise
