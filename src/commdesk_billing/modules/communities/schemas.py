"""Request and response bodies of the community economy's API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pydantic.config import JsonDict

from commdesk_billing.modules.communities.fees import MAX_FEE_BPS
from commdesk_billing.modules.communities.model import Earnings, FeePlan, Spend
from commdesk_billing.money import rate_text
from commdesk_billing.security.text import StrictInput

Credits = Annotated[StrictInt, Field(ge=1, le=10**13, description="Whole credits, > 0")]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=500)]
FeeBps = Annotated[StrictInt, Field(ge=0, le=MAX_FEE_BPS, description="Basis points: 1000 = 10 %")]


class SpendRequest(StrictInput):
    credits: Credits
    reason: Reason
    reference: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="The caller's own reference: a ticket, a post, a tip"
    )
    user_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="The member whose credits are spent (services with communities:spend)",
    )


class FeePlanRequest(StrictInput):
    fee_bps: FeeBps
    reason: Reason


class ReversalRequest(StrictInput):
    reason: Reason


class Receipt(BaseModel):
    """The fee receipt of one spend, to the credit and to the paisa."""

    gross_credits: int
    fee_credits: int
    net_credits: int
    basis_paise: int = Field(description="Cost basis of the credits spent (taxable value)")
    fee_paise: int
    net_paise: int
    fee_rate: str
    rounding: str
    note: str | None

    @classmethod
    def of(cls, s: Spend) -> Receipt:
        note = None
        if s.basis_paise == 0:
            note = "paid with promotional credits: the community earns credits, no rupees"
        return cls(
            gross_credits=s.credits,
            fee_credits=s.fee_credits,
            net_credits=s.community_credits,
            basis_paise=s.basis_paise,
            fee_paise=s.fee_paise,
            net_paise=s.community_paise,
            fee_rate=rate_text(s.fee_bps),
            rounding="fee = gross x rate, rounded half up, in credits and in paise",
            note=note,
        )


_PLAN_EXAMPLE: JsonDict = {
    "community_id": "chess-club",
    "version": 2,
    "fee_bps": 1000,
    "fee_rate": "10.00%",
    "reason": "standard rate from 2026-12",
    "created_by": "fin-anita",
    "created_at": "2026-12-01T09:00:00Z",
}


class SpendOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2b8c1d-6a4e-4f0b-9c7d-1e2a3b4c5d6e",
                    "community_id": "chess-club",
                    "wallet_id": "0b6c2d1e-8f4a-4c3b-9a55-2f1f0c9e7a10",
                    "credits": 100,
                    "fee_credits": 10,
                    "community_credits": 90,
                    "basis_paise": 8500,
                    "fee_paise": 850,
                    "community_paise": 7650,
                    "fee_bps": 1000,
                    "fee_plan_version": 2,
                    "reason": "ticket",
                    "reference": "event-42",
                    "transaction_id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
                    "created_at": "2026-12-07T10:15:00Z",
                    "reversed_at": None,
                    "receipt": {
                        "gross_credits": 100,
                        "fee_credits": 10,
                        "net_credits": 90,
                        "basis_paise": 8500,
                        "fee_paise": 850,
                        "net_paise": 7650,
                        "fee_rate": "10.00%",
                        "rounding": "fee = gross x rate, rounded half up, in credits and in paise",
                        "note": None,
                    },
                }
            ]
        }
    )

    id: uuid.UUID
    community_id: str
    wallet_id: uuid.UUID
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
    transaction_id: uuid.UUID
    created_at: datetime
    reversed_at: datetime | None
    receipt: Receipt

    @classmethod
    def of(cls, s: Spend) -> SpendOut:
        return cls(
            id=s.id,
            community_id=s.community_id,
            wallet_id=s.wallet_id,
            credits=s.credits,
            fee_credits=s.fee_credits,
            community_credits=s.community_credits,
            basis_paise=s.basis_paise,
            fee_paise=s.fee_paise,
            community_paise=s.community_paise,
            fee_bps=s.fee_bps,
            fee_plan_version=s.fee_plan_version,
            reason=s.reason,
            reference=s.reference,
            transaction_id=s.transaction_id,
            created_at=s.created_at,
            reversed_at=s.reversed_at,
            receipt=Receipt.of(s),
        )


class SpendPage(BaseModel):
    data: list[SpendOut]
    next_cursor: str | None


class FeePlanOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_PLAN_EXAMPLE]})

    community_id: str
    version: int = Field(description="0: no plan of its own, the configured default")
    fee_bps: int
    fee_rate: str
    reason: str
    created_by: str | None
    created_at: datetime | None

    @classmethod
    def of(cls, p: FeePlan) -> FeePlanOut:
        return cls(
            community_id=p.community_id,
            version=p.version,
            fee_bps=p.fee_bps,
            fee_rate=rate_text(p.fee_bps),
            reason=p.reason,
            created_by=p.created_by,
            created_at=p.created_at,
        )


class EarningsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "community_id": "chess-club",
                    "earned_credits": 4320,
                    "fee_credits": 480,
                    "payable_paise": 367200,
                    "basis_paise": 408000,
                    "fee_paise": 40800,
                    "spends": 49,
                    "reversals": 1,
                    "fee_plan": _PLAN_EXAMPLE,
                }
            ]
        }
    )

    community_id: str
    earned_credits: int = Field(description="Net of the platform's fee and of reversals")
    fee_credits: int
    payable_paise: int = Field(description="What CommDesk owes the community, before payouts")
    basis_paise: int
    fee_paise: int
    spends: int
    reversals: int
    fee_plan: FeePlanOut

    @classmethod
    def of(cls, e: Earnings, plan: FeePlan) -> EarningsOut:
        return cls(
            community_id=e.community_id,
            earned_credits=e.earned_credits,
            fee_credits=e.fee_credits,
            payable_paise=e.payable_paise,
            basis_paise=e.basis_paise,
            fee_paise=e.fee_paise,
            spends=e.spends,
            reversals=e.reversals,
            fee_plan=FeePlanOut.of(plan),
        )
