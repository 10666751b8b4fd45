"""Request and response bodies of the partners' API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from commdesk_billing.modules.partners.model import (
    Attribution,
    Partner,
    PartnerStatus,
    Reversal,
    Share,
    Totals,
)
from commdesk_billing.modules.partners.shares import MAX_SHARE_BPS
from commdesk_billing.money import rate_text
from commdesk_billing.security.text import StrictInput
from commdesk_billing.security.timestamps import Timestamp

PartnerIdPattern = r"^[A-Za-z0-9_-]{1,64}$"
ShareBps = Annotated[
    StrictInt, Field(ge=0, le=MAX_SHARE_BPS, description="Basis points of taxable value")
]
Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=500)]


class PartnerCreate(StrictInput):
    id: Annotated[StrictStr, Field(pattern=PartnerIdPattern, description="Chosen once")]
    name: Name
    share_bps: ShareBps
    reason: Reason = "partner created"


class PartnerChange(StrictInput):
    name: Name
    share_bps: ShareBps
    status: PartnerStatus = PartnerStatus.active
    reason: Reason


class AttributionRequest(StrictInput):
    user_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] = Field(
        description="CommDesk's user id (the `sub` of the user's tokens)"
    )
    valid_from: Timestamp
    valid_until: Timestamp | None = Field(default=None, description="Excluded; null: no end")

    @model_validator(mode="after")
    def _window(self) -> AttributionRequest:
        if self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class PartnerOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "acme-referrals",
                    "name": "Acme Referrals",
                    "share_bps": 1000,
                    "share_rate": "10.00%",
                    "status": "active",
                    "version": 1,
                    "created_at": "2026-12-07T10:00:00Z",
                    "updated_at": "2026-12-07T10:00:00Z",
                }
            ]
        }
    )

    id: str
    name: str
    share_bps: int
    share_rate: str
    status: PartnerStatus
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: Partner) -> PartnerOut:
        return cls(
            id=p.id,
            name=p.name,
            share_bps=p.share_bps,
            share_rate=rate_text(p.share_bps),
            status=p.status,
            version=p.version,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )


class AttributionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "c2e4a6b8-0d1f-4a3c-9e5b-7d9f1b3d5f70",
                    "partner_id": "acme-referrals",
                    "user_id": "usr_7f3a9c21",
                    "valid_from": "2026-12-06T18:30:00Z",
                    "valid_until": "2027-12-06T18:30:00Z",
                    "created_at": "2026-12-07T10:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    partner_id: str
    user_id: str
    valid_from: datetime
    valid_until: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, a: Attribution) -> AttributionOut:
        return cls(
            id=a.id,
            partner_id=a.partner_id,
            user_id=a.user_external_id,
            valid_from=a.valid_from,
            valid_until=a.valid_until,
            created_at=a.created_at,
        )


class ShareOut(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    taxable_paise: int
    share_bps: int
    terms_version: int
    share_paise: int
    created_at: datetime

    @classmethod
    def of(cls, s: Share) -> ShareOut:
        return cls(
            id=s.id,
            payment_id=s.payment_id,
            taxable_paise=s.taxable_paise,
            share_bps=s.share_bps,
            terms_version=s.terms_version,
            share_paise=s.share_paise,
            created_at=s.created_at,
        )


class ReversalOut(BaseModel):
    id: uuid.UUID
    refund_id: uuid.UUID
    share_id: uuid.UUID
    refund_taxable_paise: int
    share_paise: int
    created_at: datetime

    @classmethod
    def of(cls, r: Reversal) -> ReversalOut:
        return cls(
            id=r.id,
            refund_id=r.refund_id,
            share_id=r.share_id,
            refund_taxable_paise=r.refund_taxable_paise,
            share_paise=r.share_paise,
            created_at=r.created_at,
        )


class EarningsOut(BaseModel):
    partner: PartnerOut
    earned_paise: int = Field(description="Sum of shares posted")
    reversed_paise: int = Field(description="Sum taken back by refunds")
    payable_paise: int = Field(description="What CommDesk owes the partner, before payouts")
    share_count: int
    reversal_count: int
    shares: list[ShareOut] = Field(description="The latest shares, newest first")
    reversals: list[ReversalOut] = Field(description="The latest reversals, newest first")

    @classmethod
    def of(
        cls, p: Partner, t: Totals, shares: list[Share], reversals: list[Reversal]
    ) -> EarningsOut:
        return cls(
            partner=PartnerOut.of(p),
            earned_paise=t.earned_paise,
            reversed_paise=t.reversed_paise,
            payable_paise=t.payable_paise,
            share_count=t.shares,
            reversal_count=t.reversals,
            shares=[ShareOut.of(s) for s in shares],
            reversals=[ReversalOut.of(r) for r in reversals],
        )
