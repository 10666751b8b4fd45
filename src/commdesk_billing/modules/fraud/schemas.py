"""Request and response bodies of the fraud API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictStr

from commdesk_billing.security.text import StrictInput


class ListEntryIn(StrictInput):
    list: Literal["allow", "deny"]
    kind: Literal["user", "device", "ip", "vpa"] = Field(
        description="user: billing's user id (a UUID); device: the X-Device-Id value; ip; "
        "vpa: a UPI id"
    )
    value: Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"^[^\s]+$")]
    reason: Annotated[StrictStr, Field(min_length=3, max_length=500)]


class ListEntryOut(BaseModel):
    id: uuid.UUID
    list: str
    kind: str
    value: str
    reason: str
    created_by: str
    created_at: datetime


class ListPage(BaseModel):
    data: list[ListEntryOut]
    next_cursor: str | None


class ReviewOut(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    stage: str = Field(description="order: scored before the order opened; paid: once paid")
    score: int
    rules: list[str] = Field(description="The rules that fired")
    status: str = Field(description="pending | released | refunded")
    hold_id: uuid.UUID | None = Field(description="The wallet hold keeping the credits")
    decided_by: str | None
    decided_role: str | None
    decided_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> ReviewOut:
        return cls(**{k: v for k, v in row.items() if k in cls.model_fields})


class ReviewPage(BaseModel):
    data: list[ReviewOut]
    next_cursor: str | None


class DecisionIn(StrictInput):
    decision: Literal["release", "refund"]
    reason: Annotated[StrictStr, Field(min_length=3, max_length=100)]


class AssessmentOut(BaseModel):
    id: uuid.UUID
    stage: str
    payment_id: uuid.UUID | None
    ip: str | None
    device_id: str | None
    instrument: str | None
    amount_paise: int
    score: int
    action: str
    rules: list[str]
    listed: str | None = Field(description="allow / deny: a list decided, not the rules")
    created_at: datetime


class EventOut(BaseModel):
    id: uuid.UUID
    kind: str = Field(description="The rule that fired, or what payments recorded")
    severity: str
    payment_id: uuid.UUID | None
    details: dict[str, Any] = Field(description="rule, weight, features, score, action")
    created_at: datetime


class ProfileOut(BaseModel):
    user_id: uuid.UUID
    assessments: list[AssessmentOut] = Field(description="Latest scorings, newest first")
    events: list[EventOut] = Field(description="Latest fraud events, newest first")
    reviews: list[ReviewOut] = Field(description="Reviews and their decisions")
    rules_fired: dict[str, int] = Field(description="How often each rule fired (in the above)")
    blocked: int = Field(description="Attempts refused (in the above)")
    highest_score: int
    listed: dict[str, str] = Field(description="kind -> allow/deny, for the user id")
