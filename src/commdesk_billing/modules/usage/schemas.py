"""Request and response bodies of the usage API. Requests are strict: unknown fields,
strings for numbers, floats and booleans for quantities and prices are all refused."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from commdesk_billing.modules.usage import rating
from commdesk_billing.modules.usage.metering import MAX_BATCH, EventResult, UsageEvent
from commdesk_billing.modules.usage.model import (
    Debt,
    Granularity,
    PeriodFigures,
    Policy,
    PriceVersion,
    Tier,
)
from commdesk_billing.modules.usage.summary import Summary
from commdesk_billing.security.text import StrictInput
from commdesk_billing.security.timestamps import Timestamp

MeterPattern = r"^[a-z][a-z0-9_.:-]{0,63}$"
Meter = Annotated[StrictStr, Field(pattern=MeterPattern, description="A meter's name")]
EventId = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="The reporting service's own id of the event (visible ASCII)",
    ),
]
Quantity = Annotated[StrictInt, Field(ge=1, le=rating.MAX_QUANTITY)]
OverdraftLimit = Annotated[StrictInt, Field(ge=0, le=10**13)]


class UsageEventIn(StrictInput):
    event_id: EventId
    meter: Meter
    quantity: Quantity
    occurred_at: Timestamp
    wallet_id: uuid.UUID | None = Field(default=None, description="The wallet charged")
    user_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="Or the user (the `sub` of their tokens) whose wallet it is"
    )

    @model_validator(mode="after")
    def _one_payer(self) -> UsageEventIn:
        if (self.wallet_id is None) == (self.user_id is None):
            raise ValueError("give exactly one of wallet_id and user_id")
        return self

    def to_event(self) -> UsageEvent:
        return UsageEvent(
            self.event_id,
            self.meter,
            self.quantity,
            self.occurred_at,
            self.wallet_id,
            self.user_id,
        )


class UsageBatchIn(StrictInput):
    events: Annotated[list[UsageEventIn], Field(min_length=1, max_length=MAX_BATCH)]


EventStatus = Literal["accepted", "duplicate", "rejected", "conflict"]


class EventResultOut(BaseModel):
    event_id: str
    status: EventStatus = Field(
        description="accepted: charged; duplicate: the event_id was reported before (its first "
        "outcome); rejected: recorded or refused without a charge, see `reason`; conflict: "
        "the event_id was reported before with other contents"
    )
    reason: str | None = Field(description="Why rejected (or why the duplicate was)")
    recorded: bool = Field(description="Whether the event is on record (a replay is a duplicate)")
    wallet_id: uuid.UUID | None
    price_version: int | None
    credits: int = Field(description="What the event cost, in whole credits")
    debited_credits: int
    debt_credits: int = Field(description="Left owing under an overdraft policy")

    @classmethod
    def of(cls, r: EventResult) -> EventResultOut:
        return cls(**r.__dict__)


class UsageBatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 1,
                    "duplicate": 0,
                    "rejected": 1,
                    "conflict": 0,
                    "results": [
                        {
                            "event_id": "msg-8812-summary",
                            "status": "accepted",
                            "reason": None,
                            "recorded": True,
                            "wallet_id": "0b6c2d1e-8f4a-4c3b-9a55-2f1f0c9e7a10",
                            "price_version": 1,
                            "credits": 12,
                            "debited_credits": 12,
                            "debt_credits": 0,
                        },
                        {
                            "event_id": "msg-8813-summary",
                            "status": "rejected",
                            "reason": "wallet_not_found",
                            "recorded": False,
                            "wallet_id": None,
                            "price_version": None,
                            "credits": 0,
                            "debited_credits": 0,
                            "debt_credits": 0,
                        },
                    ],
                }
            ]
        }
    )

    accepted: int
    duplicate: int
    rejected: int
    conflict: int
    results: list[EventResultOut]

    @classmethod
    def of(cls, results: list[EventResult]) -> UsageBatchOut:
        count = {s: sum(1 for r in results if r.status == s) for s in _STATUSES}
        return cls(**count, results=[EventResultOut.of(r) for r in results])


_STATUSES = ("accepted", "duplicate", "rejected", "conflict")


class TierIn(StrictInput):
    # Optional so a document's example can state the last tier: FastAPI drops every null
    # from /openapi.json, so an example's `"up_to": null` would reach a reader as no key.
    up_to: Annotated[StrictInt, Field(ge=1, le=10**15)] | None = Field(
        default=None,
        description="The tier's last unit in the month (cumulative); null or left out for "
        "the last tier, and only for it",
    )
    millicredits_per_unit: Annotated[
        StrictInt, Field(ge=0, le=rating.MAX_MILLICREDITS_PER_UNIT)
    ] = Field(description="1000 = one credit per unit")


class PriceVersionIn(StrictInput):
    meter: Meter
    effective_from: Timestamp | None = Field(default=None, description="Default: now")
    tiers: Annotated[list[TierIn], Field(min_length=1, max_length=rating.MAX_TIERS)]
    on_insufficient: Policy = Policy.reject
    overdraft_limit_credits: OverdraftLimit = 0
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _consistent(self) -> PriceVersionIn:
        rating.check_tiers(self.tier_values())
        if self.on_insufficient is Policy.reject and self.overdraft_limit_credits:
            raise ValueError("a reject policy has no overdraft limit")
        return self

    def tier_values(self) -> list[Tier]:
        return [Tier(t.up_to, t.millicredits_per_unit) for t in self.tiers]


class TierOut(BaseModel):
    up_to: int | None
    millicredits_per_unit: int


class PriceVersionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "meter": "ai.summary",
                    "version": 1,
                    "effective_from": "2026-12-01T00:00:00Z",
                    "tiers": [
                        {"up_to": 100000, "millicredits_per_unit": 10},
                        {"up_to": None, "millicredits_per_unit": 5},
                    ],
                    "on_insufficient": "overdraft",
                    "overdraft_limit_credits": 500,
                    "reason": "AI summaries priced per token from 2026-12",
                    "created_by": "fin-anita",
                    "created_at": "2026-11-30T16:00:00Z",
                }
            ]
        }
    )

    meter: str
    version: int
    effective_from: datetime
    tiers: list[TierOut]
    on_insufficient: Policy
    overdraft_limit_credits: int
    reason: str
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, v: PriceVersion) -> PriceVersionOut:
        return cls(
            meter=v.meter,
            version=v.version,
            effective_from=v.effective_from,
            tiers=[
                TierOut(up_to=t.up_to, millicredits_per_unit=t.millicredits_per_unit)
                for t in v.tiers
            ],
            on_insufficient=v.on_insufficient,
            overdraft_limit_credits=v.overdraft_limit_credits,
            reason=v.reason,
            created_by=v.created_by,
            created_at=v.created_at,
        )


class PriceBookOut(BaseModel):
    versions: list[PriceVersionOut] = Field(description="By meter, oldest version first")


class PeriodOut(BaseModel):
    meter: str
    period_start: date
    units: int
    credits: int
    debited_credits: int
    debt_credits: int
    events: int
    rejected_events: int

    @classmethod
    def of(cls, p: PeriodFigures) -> PeriodOut:
        return cls(
            meter=p.meter,
            period_start=p.period_start,
            units=p.units,
            credits=p.credits,
            debited_credits=p.debited_credits,
            debt_credits=p.debt_credits,
            events=p.events,
            rejected_events=p.rejected_events,
        )


class DebtOut(BaseModel):
    meter: str
    incurred_credits: int
    repaid_credits: int
    outstanding_credits: int

    @classmethod
    def of(cls, d: Debt) -> DebtOut:
        return cls(
            meter=d.meter,
            incurred_credits=d.incurred_credits,
            repaid_credits=d.repaid_credits,
            outstanding_credits=d.outstanding,
        )


class SummaryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "wallet_id": "0b6c2d1e-8f4a-4c3b-9a55-2f1f0c9e7a10",
                    "granularity": "month",
                    "from": "2026-12-01",
                    "to": "2026-12-07",
                    "periods": [
                        {
                            "meter": "ai.summary",
                            "period_start": "2026-12-01",
                            "units": 15000,
                            "credits": 150,
                            "debited_credits": 130,
                            "debt_credits": 20,
                            "events": 14,
                            "rejected_events": 1,
                        }
                    ],
                    "units": 15000,
                    "credits": 150,
                    "debited_credits": 130,
                    "debt_credits": 20,
                    "events": 14,
                    "rejected_events": 1,
                    "debt_outstanding_credits": 20,
                    "debts": [
                        {
                            "meter": "ai.summary",
                            "incurred_credits": 20,
                            "repaid_credits": 0,
                            "outstanding_credits": 20,
                        }
                    ],
                }
            ]
        }
    )

    wallet_id: uuid.UUID
    granularity: Granularity
    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    periods: list[PeriodOut] = Field(description="By period start, then meter")
    units: int
    credits: int
    debited_credits: int
    debt_credits: int
    events: int
    rejected_events: int
    debt_outstanding_credits: int
    debts: list[DebtOut]

    @classmethod
    def of(cls, s: Summary) -> SummaryOut:
        return cls.model_validate(
            {
                "wallet_id": s.wallet_id,
                "granularity": s.granularity,
                "from": s.first,
                "to": s.last,
                "periods": [PeriodOut.of(p) for p in s.periods],
                "units": sum(p.units for p in s.periods),
                "credits": sum(p.credits for p in s.periods),
                "debited_credits": sum(p.debited_credits for p in s.periods),
                "debt_credits": sum(p.debt_credits for p in s.periods),
                "events": sum(p.events for p in s.periods),
                "rejected_events": sum(p.rejected_events for p in s.periods),
                "debt_outstanding_credits": sum(d.outstanding for d in s.debts),
                "debts": [DebtOut.of(d) for d in s.debts],
            }
        )
