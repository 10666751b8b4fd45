"""Request and response bodies of the sponsorships' API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pydantic.config import JsonDict

from commdesk_billing.modules.communities.directory import ID_PATTERN
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.schemas import Email, Phone, StateCode
from commdesk_billing.modules.sponsorships.model import (
    Milestone,
    MilestoneStatus,
    Sponsorship,
    SponsorshipPath,
    SponsorshipStatus,
)
from commdesk_billing.money import rate_text
from commdesk_billing.security.text import StrictInput

Paise = Annotated[StrictInt, Field(ge=1, le=10**10)]
Title = Annotated[StrictStr, Field(min_length=1, max_length=200)]
# The payment's status (payments.state.Status), spelled out: `Status` is also the name of
# the subscriptions' own enum, and two enums of one name would both get long, module-named
# schema components. tests/contract/test_openapi_spec.py holds the two to the same values.
PaymentStatus = Literal[
    "CREATED",
    "ACTIVE",
    "FAILED",
    "USER_DROPPED",
    "PAID",
    "CREDITED",
    "EXPIRED",
    "CANCELLED",
    "REVIEW",
]

_MILESTONE_EXAMPLE: JsonDict = {
    "seq": 1,
    "title": "Venue booked",
    "amount_paise": 200000,
    "status": "delivered",
    "delivered_at": "2026-12-10T12:00:00Z",
    "released_at": None,
}


class MilestoneRequest(StrictInput):
    title: Title
    amount_paise: Paise


class SponsorshipRequest(StrictInput):
    community_id: Annotated[StrictStr, Field(pattern=rf"^{ID_PATTERN.pattern}$")]
    amount_paise: Paise = Field(
        description="What the community receives, in paise, within the configured bounds; "
        "the platform's fee and the GST on it are charged on top"
    )
    purpose: Annotated[StrictStr, Field(min_length=1, max_length=500)]
    milestones: list[MilestoneRequest] | None = Field(
        None,
        max_length=20,
        description="1-20, adding up to amount_paise exactly; none: one milestone of the "
        "whole amount",
    )
    customer_phone: Phone
    customer_email: Email | None = None
    buyer_state: StateCode | None = Field(
        None,
        description="GST state code of the sponsor (place of supply); default: the one on "
        "the sponsor's record, else ours",
    )


class MilestoneOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_MILESTONE_EXAMPLE]})

    seq: int
    title: str
    amount_paise: int
    status: MilestoneStatus = Field(
        description="pending, then delivered (the community's owners), then released (its "
        "money the community's); refunding and refunded when it goes back to the sponsor"
    )
    delivered_at: datetime | None
    released_at: datetime | None

    @classmethod
    def of(cls, m: Milestone) -> MilestoneOut:
        return cls(
            seq=m.seq,
            title=m.title,
            amount_paise=m.amount_paise,
            status=m.status,
            delivered_at=m.delivered_at,
            released_at=m.released_at,
        )


class SponsorshipPaymentOut(BaseModel):
    id: uuid.UUID
    order_id: str
    status: PaymentStatus = Field(description="The payment's status, as `GET /v1/payments/{id}`")
    amount_paise: int
    payment_session_id: str | None
    checkout_url: str | None
    order_expires_at: datetime
    paid_at: datetime | None


class SponsorshipOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
                    "community_id": "chess-club",
                    "path": "escrow",
                    "vendor_id": None,
                    "purpose": "Winter rapid tournament 2026",
                    "status": "funded",
                    "amount_paise": 500000,
                    "fee_bps": 500,
                    "fee_rate": "5.00%",
                    "fee_paise": 25000,
                    "gst_paise": 4500,
                    "total_paise": 529500,
                    "escrow_paise": 500000,
                    "released_paise": 0,
                    "refunded_paise": 0,
                    "milestones": [
                        _MILESTONE_EXAMPLE,
                        {
                            "seq": 2,
                            "title": "Tournament held",
                            "amount_paise": 300000,
                            "status": "pending",
                            "delivered_at": None,
                            "released_at": None,
                        },
                    ],
                    "payment": {
                        "id": "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
                        "order_id": "cdb_ord_01JF2K7Q9X",
                        "status": "CREDITED",
                        "amount_paise": 529500,
                        "payment_session_id": "session_8kq2Xy",
                        "checkout_url": None,
                        "order_expires_at": "2026-12-07T10:45:00Z",
                        "paid_at": "2026-12-07T10:17:30Z",
                    },
                    "funded_at": "2026-12-07T10:17:31Z",
                    "created_at": "2026-12-07T10:15:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    community_id: str
    path: SponsorshipPath = Field(
        description="`escrow`: held and released per milestone; `split`: the order splits "
        "the community's part to its Easy Split vendor, and Cashfree settles it (milestones "
        "informational)"
    )
    vendor_id: str | None = Field(description="The split path's vendor at Cashfree")
    purpose: str
    status: SponsorshipStatus = Field(
        description="awaiting_payment until the sponsor's payment arrives, then funded; "
        "completed when every milestone is released"
    )
    amount_paise: int = Field(description="The community's part (Σ milestones)")
    fee_bps: int
    fee_rate: str
    fee_paise: int
    gst_paise: int
    total_paise: int = Field(description="What the sponsor pays: amount + fee + GST on fee")
    escrow_paise: int = Field(description="Held for the community now (0 on the split path)")
    released_paise: int
    refunded_paise: int = Field(
        description="The community's part returned to the sponsor by refunds"
    )
    milestones: list[MilestoneOut]
    payment: SponsorshipPaymentOut
    funded_at: datetime | None
    created_at: datetime

    @classmethod
    def of(
        cls, s: Sponsorship, ms: list[Milestone], p: Payment, checkout_url: str | None
    ) -> SponsorshipOut:
        released = sum(m.amount_paise for m in ms if m.status is MilestoneStatus.released)
        refunded = sum(m.amount_paise for m in ms if m.status is MilestoneStatus.refunded)
        if s.split:
            refunded = s.split_refunded_paise
        funded = s.funded_journal_id is not None and not s.split
        return cls(
            id=s.id,
            community_id=s.community_id,
            path=s.path,
            vendor_id=s.vendor_id,
            purpose=s.purpose,
            status=s.status,
            amount_paise=s.amount_paise,
            fee_bps=s.fee_bps,
            fee_rate=rate_text(s.fee_bps),
            fee_paise=s.fee_paise,
            gst_paise=s.gst_paise,
            total_paise=s.total_paise,
            escrow_paise=s.amount_paise - released - refunded if funded else 0,
            released_paise=released,
            refunded_paise=refunded,
            milestones=[MilestoneOut.of(m) for m in ms],
            payment=SponsorshipPaymentOut(
                id=p.id,
                order_id=p.order_id,
                status=p.status.value,
                amount_paise=p.amount_paise,
                payment_session_id=p.payment_session_id,
                checkout_url=checkout_url,
                order_expires_at=p.order_expires_at,
                paid_at=p.paid_at,
            ),
            funded_at=s.funded_at,
            created_at=s.created_at,
        )


class SponsorshipSummary(BaseModel):
    id: uuid.UUID
    community_id: str
    purpose: str
    status: SponsorshipStatus
    amount_paise: int
    total_paise: int
    created_at: datetime

    @classmethod
    def of(cls, s: Sponsorship) -> SponsorshipSummary:
        return cls(
            id=s.id,
            community_id=s.community_id,
            purpose=s.purpose,
            status=s.status,
            amount_paise=s.amount_paise,
            total_paise=s.total_paise,
            created_at=s.created_at,
        )


class SponsorshipPage(BaseModel):
    data: list[SponsorshipSummary]
    next_cursor: str | None
