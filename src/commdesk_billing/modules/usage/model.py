"""What the usage module keeps: price book versions, recorded events, debts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum


class Policy(StrEnum):
    """What an event does when the wallet has too few credits."""

    reject = "reject"  # recorded as rejected, nothing debited
    overdraft = "overdraft"  # what is there is debited, the rest owed up to a bound


class Granularity(StrEnum):
    month = "month"
    day = "day"


@dataclass(frozen=True)
class Tier:
    """Units up to `up_to` (cumulative within the month; None: no end) cost
    `millicredits_per_unit` each."""

    up_to: int | None
    millicredits_per_unit: int


@dataclass(frozen=True)
class PriceVersion:
    meter: str
    version: int
    effective_from: datetime
    tiers: tuple[Tier, ...]
    on_insufficient: Policy
    overdraft_limit_credits: int
    reason: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class RecordedEvent:
    id: uuid.UUID
    source: str
    event_id: str
    wallet_id: uuid.UUID
    meter: str
    quantity: int
    occurred_at: datetime
    price_version: int
    millicredits: int
    credits: int
    outcome: str
    reject_reason: str | None
    debited_credits: int
    debt_credits: int


@dataclass(frozen=True)
class MonthState:
    """A wallet's meter in one month, as rated so far."""

    units: int = 0
    millicredits: int = 0


@dataclass(frozen=True)
class Debt:
    wallet_id: uuid.UUID
    meter: str
    incurred_credits: int
    repaid_credits: int

    @property
    def outstanding(self) -> int:
        return self.incurred_credits - self.repaid_credits


@dataclass(frozen=True)
class PeriodFigures:
    meter: str
    granularity: Granularity
    period_start: date
    units: int
    millicredits: int
    credits: int
    debited_credits: int
    debt_credits: int
    events: int
    rejected_events: int
