"""Request and response bodies of the subscriptions API. Requests are strict: unknown
fields, strings for numbers, floats and booleans for amounts are refused."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from commdesk_billing.modules.subscriptions.model import (
    ChangeStatus,
    Currency,
    IntervalUnit,
    Period,
    PeriodStatus,
    Plan,
    PlanChange,
    Status,
    Subscription,
)
from commdesk_billing.security.text import StrictInput

PlanCode = Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]


class PlanRequest(StrictInput):
    code: PlanCode
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    currency: Currency = Currency.credits
    price_credits: Annotated[StrictInt, Field(ge=1, le=10**13)] | None = None
    price_paise: Annotated[StrictInt, Field(ge=100, le=10**10)] | None = None
    interval_unit: IntervalUnit
    interval_count: Annotated[StrictInt, Field(ge=1, le=366)] = 1
    grace_period_seconds: Annotated[StrictInt, Field(ge=0, le=90 * 86400)] = 0
    dunning_offsets_seconds: Annotated[
        list[Annotated[StrictInt, Field(ge=1, le=90 * 86400)]], Field(max_length=10)
    ] = Field(default_factory=list)
    active: StrictBool = True

    @model_validator(mode="after")
    def _one_price(self) -> PlanRequest:
        if (self.currency is Currency.credits) != (self.price_credits is not None) or (
            self.currency is Currency.inr
        ) != (self.price_paise is not None):
            raise ValueError("a CREDITS plan has price_credits, an INR plan price_paise")
        return self


class PlanOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "starter",
                    "version": 2,
                    "name": "Starter",
                    "currency": "CREDITS",
                    "price_credits": 30,
                    "price_paise": None,
                    "interval_unit": "month",
                    "interval_count": 1,
                    "grace_period_seconds": 604800,
                    "dunning_offsets_seconds": [86400, 259200],
                    "active": True,
                    "created_at": "2026-12-01T10:00:00Z",
                }
            ]
        }
    )

    code: str
    version: int
    name: str
    currency: Currency
    price_credits: int | None
    price_paise: int | None
    interval_unit: IntervalUnit
    interval_count: int
    grace_period_seconds: int
    dunning_offsets_seconds: list[int]
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, p: Plan) -> PlanOut:
        return cls(
            code=p.code,
            version=p.version,
            name=p.name,
            currency=p.currency,
            price_credits=p.price_credits,
            price_paise=p.price_paise,
            interval_unit=p.interval_unit,
            interval_count=p.interval_count,
            grace_period_seconds=p.grace_period_s,
            dunning_offsets_seconds=p.dunning_offsets_s,
            active=p.active,
            created_at=p.created_at,
        )


class PlanList(BaseModel):
    data: list[PlanOut]


class SubscribeRequest(StrictInput):
    plan_code: PlanCode
    # An INR plan's periods are charged on this mandate (the caller's own, active, its
    # maximum at least the price); a credit plan takes none.
    mandate_id: uuid.UUID | None = None


class CancelRequest(StrictInput):
    at_period_end: StrictBool = True


class ChangeRequest(StrictInput):
    plan_code: PlanCode


class PeriodOut(BaseModel):
    number: int
    period_start: datetime
    period_end: datetime
    plan_code: str
    plan_version: int
    price_credits: int | None
    price_paise: int | None
    status: PeriodStatus
    attempts: int
    next_retry_at: datetime | None
    grace_until: datetime
    paid_at: datetime | None

    @classmethod
    def of(cls, p: Period) -> PeriodOut:
        return cls(
            number=p.number,
            period_start=p.period_start,
            period_end=p.period_end,
            plan_code=p.plan_code,
            plan_version=p.plan_version,
            price_credits=p.price_credits,
            price_paise=p.price_paise,
            status=p.status,
            attempts=p.attempts,
            next_retry_at=p.next_retry_at,
            grace_until=p.grace_until,
            paid_at=p.paid_at,
        )


class PlanChangeOut(BaseModel):
    """An INR subscription's upgrade: `raising`/`raised` while its prorated charge on the
    mandate is awaited (the subscription stays on `from_plan_code` meanwhile), `applied` once
    paid, `failed` (with `failure`) when the charge ended unpaid, `unapplied` when it was
    paid after the subscription moved on (refunded by finance)."""

    id: uuid.UUID
    status: ChangeStatus
    from_plan_code: str
    from_plan_version: int
    to_plan_code: str
    to_plan_version: int
    period: int
    prorated_paise: int
    payment_id: uuid.UUID | None
    failure: str | None
    requested_at: datetime

    @classmethod
    def of(cls, c: PlanChange) -> PlanChangeOut:
        return cls(
            id=c.id,
            status=c.status,
            from_plan_code=c.from_plan_code,
            from_plan_version=c.from_plan_version,
            to_plan_code=c.to_plan_code,
            to_plan_version=c.to_plan_version,
            period=c.period_number,
            prorated_paise=c.price_paise,
            payment_id=c.payment_id,
            failure=c.failure,
            requested_at=c.requested_at,
        )


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3d1f0a7c-52b4-5e19-8c6d-9a0b1c2d3e4f",
                    "user_id": "usr_7f3a9c21",
                    "wallet_id": "0b6c2d1e-8f4a-4c3b-9a55-2f1f0c9e7a10",
                    "plan_code": "starter",
                    "plan_version": 2,
                    "status": "active",
                    "current_period": 1,
                    "current_period_start": "2026-12-07T10:00:00Z",
                    "current_period_end": "2027-01-07T10:00:00Z",
                    "cancel_at_period_end": False,
                    "next_plan_code": None,
                    "next_plan_version": None,
                    "ended_at": None,
                    "ended_reason": None,
                    "created_at": "2026-12-07T10:00:00Z",
                    "mandate_id": None,
                    "periods": [
                        {
                            "number": 1,
                            "period_start": "2026-12-07T10:00:00Z",
                            "period_end": "2027-01-07T10:00:00Z",
                            "plan_code": "starter",
                            "plan_version": 2,
                            "price_credits": 30,
                            "price_paise": None,
                            "status": "paid",
                            "attempts": 1,
                            "next_retry_at": None,
                            "grace_until": "2026-12-14T10:00:00Z",
                            "paid_at": "2026-12-07T10:00:00Z",
                        }
                    ],
                    "pending_change": None,
                    "plan_changes": None,
                }
            ]
        }
    )

    id: uuid.UUID
    user_id: str
    wallet_id: uuid.UUID
    plan_code: str
    plan_version: int
    status: Status
    current_period: int
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool
    next_plan_code: str | None
    next_plan_version: int | None
    ended_at: datetime | None
    ended_reason: str | None
    created_at: datetime
    mandate_id: uuid.UUID | None = None
    periods: list[PeriodOut] | None = None
    # An INR upgrade waiting for its payment (the read of one subscription, and a change's
    # answer), and every plan change of the subscription (the read of one).
    pending_change: PlanChangeOut | None = None
    plan_changes: list[PlanChangeOut] | None = None

    @classmethod
    def of(
        cls,
        s: Subscription,
        periods: list[Period] | None = None,
        changes: list[PlanChange] | None = None,
        pending: PlanChange | None = None,
    ) -> SubscriptionOut:
        if pending is None and changes:
            pending = next((c for c in changes if c.open), None)
        return cls(
            id=s.id,
            user_id=s.user_ref,
            wallet_id=s.wallet_id,
            plan_code=s.plan_code,
            plan_version=s.plan_version,
            status=s.status,
            current_period=s.current_period,
            current_period_start=s.current_period_start,
            current_period_end=s.current_period_end,
            cancel_at_period_end=s.cancel_at_period_end,
            next_plan_code=s.next_plan_code,
            next_plan_version=s.next_plan_version,
            ended_at=s.ended_at,
            ended_reason=s.ended_reason,
            created_at=s.created_at,
            mandate_id=s.mandate_id,
            periods=None if periods is None else [PeriodOut.of(p) for p in periods],
            pending_change=None if pending is None else PlanChangeOut.of(pending),
            plan_changes=None if changes is None else [PlanChangeOut.of(c) for c in changes],
        )


class SubscriptionList(BaseModel):
    data: list[SubscriptionOut]
    next_cursor: str | None = None


class ChangeOut(BaseModel):
    subscription: SubscriptionOut
    direction: Literal["upgrade", "downgrade"]
    prorated_credits: int
    # An INR subscription's upgrade: the prorated price charged on the mandate; it takes
    # effect when paid (`effective_at` null, `subscription.pending_change` shows it).
    prorated_paise: int = 0
    effective_at: datetime | None
