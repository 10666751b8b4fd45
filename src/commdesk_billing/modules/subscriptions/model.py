"""Subscriptions' values: plans, subscriptions, periods, charges; and period arithmetic."""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Currency(StrEnum):
    credits = "CREDITS"
    inr = "INR"


class IntervalUnit(StrEnum):
    day = "day"
    week = "week"
    month = "month"
    year = "year"


class Status(StrEnum):
    # An INR subscription whose first period's charge on the mandate is not paid yet: no
    # service until it is (the debit comes a day or more after the subscribe, §15).
    pending = "pending"
    active = "active"
    past_due = "past_due"
    cancelled = "cancelled"
    expired = "expired"


LIVE = (Status.pending, Status.active, Status.past_due)


class PeriodStatus(StrEnum):
    pending = "pending"  # made by the renewal job, not yet charged
    past_due = "past_due"  # a charge failed (too few credits): in grace, retried
    paid = "paid"
    unpaid = "unpaid"  # grace ran out: the subscription expired
    void = "void"  # the subscription ended before it was paid


@dataclass(frozen=True)
class Plan:
    code: str
    version: int
    name: str
    currency: Currency
    price_credits: int | None
    price_paise: int | None
    interval_unit: IntervalUnit
    interval_count: int
    grace_period_s: int
    dunning_offsets_s: list[int]
    active: bool
    created_by: str
    created_at: datetime

    @property
    def same_interval(self) -> tuple[IntervalUnit, int]:
        return (self.interval_unit, self.interval_count)


@dataclass(frozen=True)
class Subscription:
    id: uuid.UUID
    user_id: uuid.UUID
    user_ref: str
    wallet_id: uuid.UUID
    plan_code: str
    plan_version: int
    status: Status
    anchor_at: datetime
    current_period: int
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool
    next_plan_code: str | None
    next_plan_version: int | None
    ended_at: datetime | None
    ended_reason: str | None
    created_at: datetime
    updated_at: datetime
    # The member's mandate an INR subscription is charged on (None: priced in credits).
    mandate_id: uuid.UUID | None = None

    @property
    def on_mandate(self) -> bool:
        return self.mandate_id is not None


@dataclass(frozen=True)
class Period:
    subscription_id: uuid.UUID
    number: int
    period_start: datetime
    period_end: datetime
    plan_code: str
    plan_version: int
    price_credits: int | None  # a credit plan's period
    status: PeriodStatus
    attempts: int
    next_retry_at: datetime | None
    grace_until: datetime
    paid_at: datetime | None
    price_paise: int | None = None  # an INR plan's period (GST inclusive)


class AttemptStatus(StrEnum):
    raising = "raising"  # written; the payment on the mandate not (yet) written
    raised = "raised"  # the payment exists; Cashfree's answer awaited
    paid = "paid"
    failed = "failed"
    unapplied = "unapplied"  # paid, but no period took it (to refund)


@dataclass(frozen=True)
class MandateAttempt:
    """One charge raised on the mandate for an INR period (attempt 1, then dunning's)."""

    subscription_id: uuid.UUID
    period_number: int
    attempt: int
    operation_key: str
    mandate_id: uuid.UUID
    price_paise: int
    payment_id: uuid.UUID | None
    status: AttemptStatus
    failure: str | None
    created_at: datetime
    updated_at: datetime


class ChangeStatus(StrEnum):
    raising = "raising"  # written; its payment on the mandate not (yet) written
    raised = "raised"  # the payment exists; its debit awaited
    applied = "applied"  # paid: the subscription is on the new plan
    failed = "failed"  # the payment ended unpaid (or was refused): the old plan stays
    unapplied = "unapplied"  # paid, but the subscription had moved on (to refund)


OPEN_CHANGE = (ChangeStatus.raising, ChangeStatus.raised)


@dataclass(frozen=True)
class PlanChange:
    """An INR subscription's upgrade, waiting for (or settled by) its prorated charge."""

    id: uuid.UUID
    subscription_id: uuid.UUID
    operation_key: str
    period_number: int
    from_plan_code: str
    from_plan_version: int
    to_plan_code: str
    to_plan_version: int
    mandate_id: uuid.UUID
    price_paise: int
    payment_id: uuid.UUID | None
    status: ChangeStatus
    failure: str | None
    requested_at: datetime
    created_at: datetime
    updated_at: datetime

    @property
    def open(self) -> bool:
        return self.status in OPEN_CHANGE


@dataclass(frozen=True)
class Charge:
    id: uuid.UUID
    subscription_id: uuid.UUID
    period_number: int
    kind: str
    credits: int
    operation_key: str
    hold_id: uuid.UUID
    from_plan: str | None
    to_plan: str | None
    created_at: datetime


def _add_months(at: datetime, months: int) -> datetime:
    # The day is clamped to the month's length (31 Jan + 1 month = 28/29 Feb); periods are
    # always counted from the subscription's anchor, so the clamp never drifts later ones.
    index = at.month - 1 + months
    year, month = at.year + index // 12, index % 12 + 1
    day = min(at.day, calendar.monthrange(year, month)[1])
    return at.replace(year=year, month=month, day=day)


def boundary(anchor: datetime, unit: IntervalUnit, count: int, n: int) -> datetime:
    """The end of period `n` (1-based) = the start of period n + 1; period 1 starts at the
    anchor."""
    steps = count * n
    if unit is IntervalUnit.day:
        return anchor + timedelta(days=steps)
    if unit is IntervalUnit.week:
        return anchor + timedelta(weeks=steps)
    if unit is IntervalUnit.month:
        return _add_months(anchor, steps)
    return _add_months(anchor, 12 * steps)


def whole_seconds(delta: timedelta) -> int:
    """A duration in whole seconds, rounded down, with integer arithmetic only."""
    return delta // timedelta(seconds=1)
