"""Request and response bodies of the fraud API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from commdesk_billing.modules.fraud.rules import Action
from commdesk_billing.security.text import StrictInput

ListName = Literal["allow", "deny"]
ListKind = Literal["user", "device", "ip", "vpa"]
# order: scored before the order opened; paid: once paid.
Stage = Literal["order", "paid"]
ReviewStatus = Literal["pending", "released", "refunded"]
Severity = Literal["low", "medium", "high"]


class ListEntryIn(StrictInput):
    list: ListName
    kind: ListKind = Field(
        description="user: billing's user id (a UUID); device: the X-Device-Id value; ip; "
        "vpa: a UPI id"
    )
    value: Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"^[^\s]+$")]
    reason: Annotated[StrictStr, Field(min_length=3, max_length=500)]


class ListEntryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6d1e2f3a-4b5c-4d6e-9f70-8192a3b4c5d6",
                    "list": "deny",
                    "kind": "vpa",
                    "value": "mule.account@okaxis",
                    "reason": "three chargebacks from this VPA in a week",
                    "created_by": "fin-asha",
                    "created_at": "2026-12-07T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    list: ListName
    kind: ListKind
    value: str
    reason: str
    created_by: str
    created_at: datetime


class ListPage(BaseModel):
    data: list[ListEntryOut]
    next_cursor: str | None


class ReviewOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
                    "payment_id": "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
                    "user_id": "5e0d7c1a-3b2f-4d8e-a1c9-7f6e5d4c3b2a",
                    "wallet_id": "0b6c2d1e-8f4a-4c3b-9a55-2f1f0c9e7a10",
                    "stage": "paid",
                    "score": 72,
                    "rules": ["new_account_largest_pack", "velocity_ip"],
                    "status": "pending",
                    "hold_id": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
                    "decided_by": None,
                    "decided_role": None,
                    "decided_at": None,
                    "created_at": "2026-12-07T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    payment_id: uuid.UUID
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    stage: Stage = Field(description="order: scored before the order opened; paid: once paid")
    score: int
    rules: list[str] = Field(description="The rules that fired")
    status: ReviewStatus = Field(
        description="pending: credits held, awaiting a decision; released: credited; "
        "refunded: the payment was refunded"
    )
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
    stage: Stage
    payment_id: uuid.UUID | None
    ip: str | None
    device_id: str | None
    instrument: str | None
    amount_paise: int
    score: int
    action: Action
    rules: list[str]
    listed: ListName | None = Field(description="allow / deny: a list decided, not the rules")
    created_at: datetime


class FraudEventOut(BaseModel):
    id: uuid.UUID
    kind: str = Field(description="The rule that fired, or what payments recorded")
    severity: Severity
    payment_id: uuid.UUID | None
    details: dict[str, Any] = Field(description="rule, weight, features, score, action")
    created_at: datetime


class ProfileOut(BaseModel):
    user_id: uuid.UUID
    assessments: list[AssessmentOut] = Field(description="Latest scorings, newest first")
    events: list[FraudEventOut] = Field(description="Latest fraud events, newest first")
    reviews: list[ReviewOut] = Field(description="Reviews and their decisions")
    rules_fired: dict[str, int] = Field(description="How often each rule fired (in the above)")
    blocked: int = Field(description="Attempts refused (in the above)")
    highest_score: int
    listed: dict[str, ListName] = Field(description="kind -> allow/deny, for the user id")
