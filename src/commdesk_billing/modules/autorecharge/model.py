"""Auto-recharge records, as read from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class RechargeStatus(StrEnum):
    requested = "requested"  # written by the crossing, not looked at yet
    opening = "opening"  # guards passed, the order is being opened
    pending = "pending"  # the order (or charge) is open: its credits show as pending
    notified = "notified"  # on a mandate: Cashfree told the payer of the debit (still pending)
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"  # a guard said no


IN_FLIGHT = frozenset(
    {
        RechargeStatus.requested,
        RechargeStatus.opening,
        RechargeStatus.pending,
        RechargeStatus.notified,
    }
)
# Its credits show as pending on the wallet.
AWAITING = frozenset({RechargeStatus.pending, RechargeStatus.notified})


@dataclass(frozen=True)
class RechargeSettings:
    wallet_id: uuid.UUID
    enabled: bool
    threshold: int
    pack_code: str | None
    amount_paise: int | None
    customer_phone: str
    customer_email: str | None
    max_recharges_per_day: int | None
    max_recharges_per_month: int | None
    max_paise_per_day: int | None
    max_paise_per_month: int | None
    max_consecutive_failures: int
    mandate_id: uuid.UUID | None
    consecutive_failures: int
    backoff_until: datetime | None
    burn_credits_per_hour: int
    predicted_level: int
    predicted_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Recharge:
    id: uuid.UUID
    wallet_id: uuid.UUID
    status: RechargeStatus
    trigger_level: int
    available_credits: int
    payment_id: uuid.UUID | None
    amount_paise: int | None
    credits: int | None
    order_request: dict[str, Any] | None  # the order it opens, fixed at `opening`
    reason: str | None
    created_at: datetime
    opened_at: datetime | None
    settled_at: datetime | None


@dataclass(frozen=True)
class Decision:
    """One line of the decision log."""

    id: int
    wallet_id: uuid.UUID
    recharge_id: uuid.UUID | None
    decision: str
    reason: str | None
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Usage:
    """What a wallet's recharges opened so far: for the caps and the runaway detector."""

    today_count: int
    today_paise: int
    month_count: int
    month_paise: int
    window_count: int
    last_success_at: datetime | None
