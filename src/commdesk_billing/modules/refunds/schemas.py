"""Request and response bodies of the refunds API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt, StrictStr

from commdesk_billing.modules.refunds.model import Refund, RefundStatus
from commdesk_billing.security.text import StrictInput


class RefundRequest(StrictInput):
    amount_paise: Annotated[StrictInt, Field(ge=100, le=10**10)] | None = Field(
        None,
        description="How much to refund, in paise (at least ₹1); omitted: everything that "
        "is refundable now",
    )
    # Sent to Cashfree as refund_note (3-100 characters there too).
    reason: Annotated[StrictStr, Field(min_length=3, max_length=100)]
    milestones: (
        Annotated[
            list[Annotated[StrictInt, Field(ge=1, le=20)]], Field(min_length=1, max_length=20)
        ]
        | None
    ) = Field(
        None,
        description="A sponsorship's payment only (finance_admin): the milestones whose "
        "escrow is returned, with their part of the fee and GST; omitted: every one not "
        "released. A sponsorship is refunded by milestones, never by amount_paise.",
    )


class RefundOut(BaseModel):
    id: uuid.UUID
    refund_ref: str = Field(description="Our refund id at Cashfree")
    payment_id: uuid.UUID
    order_id: str
    status: RefundStatus = Field(
        description="Cashfree's refund status: CREATED and PENDING until the bank answers, "
        "ONHOLD when Cashfree waits on the merchant balance, then SUCCESS, FAILED or CANCELLED"
    )
    amount_paise: int
    taxable_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    passthrough_paise: int = Field(
        description="Of a sponsorship: the community's escrow returned (not our supply)"
    )
    base_credits: int = Field(description="Purchased credits taken back")
    bonus_credits: int = Field(description="Bonus credits taken back with them")
    reason: str
    requested_by: str
    cf_refund_id: str | None
    refund_arn: str | None
    status_description: str | None
    failure_reason: str | None
    created_at: datetime
    processed_at: datetime | None

    @classmethod
    def of(cls, r: Refund, *, staff_view: bool = True) -> RefundOut:
        """`staff_view=False` (a buyer reading): staff members' ids are not shown."""
        by = r.requested_by if staff_view or r.requested_role == "member" else "commdesk"
        return cls(
            id=r.id,
            refund_ref=r.refund_ref,
            payment_id=r.payment_id,
            order_id=r.order_id,
            status=r.status.value,
            amount_paise=r.amount_paise,
            taxable_paise=r.taxable_paise,
            cgst_paise=r.cgst_paise,
            sgst_paise=r.sgst_paise,
            igst_paise=r.igst_paise,
            passthrough_paise=r.passthrough_paise,
            base_credits=r.base_credits,
            bonus_credits=r.bonus_credits,
            reason=r.reason,
            requested_by=by,
            cf_refund_id=r.cf_refund_id,
            refund_arn=r.refund_arn,
            status_description=r.status_description,
            failure_reason=r.failure_reason,
            created_at=r.created_at,
            processed_at=r.processed_at,
        )


class RefundPage(BaseModel):
    data: list[RefundOut]
    refundable_paise: int = Field(description="What a new refund could be for right now")
    next_cursor: str | None
