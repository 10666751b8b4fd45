"""Request and response bodies of the payments API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt, StrictStr, model_validator

from commdesk_billing.modules.payments.model import Pack, Payment
from commdesk_billing.security.text import StrictInput

PackCode = Annotated[StrictStr, Field(pattern=r"^[a-z0-9_]{1,40}$")]
# Cashfree takes 10 digits, or an international number with its + prefix.
Phone = Annotated[StrictStr, Field(pattern=r"^(\+[1-9][0-9]{9,14}|[0-9]{10})$")]
Email = Annotated[
    StrictStr, Field(min_length=3, max_length=100, pattern=r"^[^@\s]{1,64}@[^@\s]{1,99}$")
]
# GST state codes: 01-38 (38 = Ladakh) and 97 (other territory).
StateCode = Annotated[StrictStr, Field(pattern=r"^(0[1-9]|[12][0-9]|3[0-8]|97)$")]


class OrderRequest(StrictInput):
    pack_code: PackCode | None = Field(None, description="A pack from GET /v1/packs")
    amount_paise: Annotated[StrictInt, Field(ge=1, le=10**10)] | None = Field(
        None, description="A custom top-up in whole rupees, within the configured limits"
    )
    customer_phone: Phone
    customer_email: Email | None = None
    buyer_state: StateCode | None = Field(
        None,
        description="GST state code of the buyer (place of supply); defaults to the one on "
        "the user's profile, else ours",
    )

    @model_validator(mode="after")
    def _one_of(self) -> OrderRequest:
        if (self.pack_code is None) == (self.amount_paise is None):
            raise ValueError("give exactly one of pack_code and amount_paise")
        return self


class PackOut(BaseModel):
    code: str
    version: int
    name: str
    price_paise: int
    base_credits: int
    bonus_credits: int
    credits: int

    @classmethod
    def of(cls, p: Pack) -> PackOut:
        return cls(
            code=p.code,
            version=p.version,
            name=p.name,
            price_paise=p.price_paise,
            base_credits=p.base_credits,
            bonus_credits=p.bonus_credits,
            credits=p.credits,
        )


class PackList(BaseModel):
    packs: list[PackOut]
    gst_mode: str
    gst_rate_bp: int
    currency: str = "INR"


class PaymentOut(BaseModel):
    id: uuid.UUID
    order_id: str
    status: str
    kind: str
    pack_code: str | None
    pack_version: int | None
    amount_paise: int
    taxable_paise: int
    gst_amount_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    currency: str
    base_credits: int
    bonus_credits: int
    credits: int
    credits_granted: int
    wallet_id: uuid.UUID
    payment_session_id: str | None
    checkout_url: str | None
    payment_method: str | None
    payment_group: str | None
    failure_code: str | None
    failure_reason: str | None
    retry_count: int
    retry_of: uuid.UUID | None
    order_expires_at: datetime
    paid_at: datetime | None
    credited_at: datetime | None
    created_at: datetime
    # 'order' (paid at checkout) or 'mandate' (a charge on a mandate: debited on or after
    # `schedule_date`, at least 24 h after Cashfree's pre-debit notice, `pdn_at`).
    channel: str = "order"
    schedule_date: date | None = None
    pdn_at: datetime | None = None

    @classmethod
    def of(cls, p: Payment, checkout_url: str | None) -> PaymentOut:
        return cls(
            id=p.id,
            order_id=p.order_id,
            status=p.status.value,
            kind=p.kind,
            pack_code=p.pack_code,
            pack_version=p.pack_version,
            amount_paise=p.amount_paise,
            taxable_paise=p.taxable_paise,
            gst_amount_paise=p.gst_amount_paise,
            cgst_paise=p.cgst_paise,
            sgst_paise=p.sgst_paise,
            igst_paise=p.igst_paise,
            currency=p.currency,
            base_credits=p.base_credits,
            bonus_credits=p.bonus_credits,
            credits=p.credits,
            credits_granted=p.credits_granted,
            wallet_id=p.wallet_id,
            payment_session_id=p.payment_session_id,
            checkout_url=checkout_url,
            payment_method=p.payment_method,
            payment_group=p.payment_group,
            failure_code=p.failure_code,
            failure_reason=p.failure_reason,
            retry_count=p.retry_count,
            retry_of=p.retry_of,
            order_expires_at=p.order_expires_at,
            paid_at=p.paid_at,
            credited_at=p.credited_at,
            created_at=p.created_at,
            channel=p.channel,
            schedule_date=p.schedule_date,
            pdn_at=p.pdn_at,
        )


class PaymentPage(BaseModel):
    data: list[PaymentOut]
    next_cursor: str | None
