"""Request and response bodies of the payments API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from commdesk_billing.modules.payments.model import Pack, Payment
from commdesk_billing.modules.payments.state import Status
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


# What a payment buys or pays for: a pack or a custom top-up (credits), a sponsorship or a
# period of an INR subscription plan (no credits). The CHECK on payments.kind.
PaymentKind = Literal["pack", "custom", "sponsorship", "subscription"]

_PACK_EXAMPLE: dict[str, Any] = {
    "code": "pack_300",
    "version": 1,
    "name": "Plus",
    "price_paise": 30000,
    "base_credits": 3000,
    "bonus_credits": 200,
    "credits": 3200,
}

# A pack bought over UPI and credited (GST inclusive at 18%, buyer in the seller's state).
PAYMENT_EXAMPLE: dict[str, Any] = {
    "id": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
    "order_id": "cdb_5f0c2b8e9a2d4c0f8f3a7c1d2e4b6a80",
    "status": "CREDITED",
    "kind": "pack",
    "pack_code": "pack_300",
    "pack_version": 1,
    "amount_paise": 30000,
    "taxable_paise": 25424,
    "gst_amount_paise": 4576,
    "cgst_paise": 2288,
    "sgst_paise": 2288,
    "igst_paise": 0,
    "currency": "INR",
    "base_credits": 3000,
    "bonus_credits": 200,
    "credits": 3200,
    "credits_granted": 3200,
    "wallet_id": "6f1d2a9e-3b4c-4d5e-8f60-718293a4b5c6",
    "payment_session_id": "session_7Hq2xYl0c4Vd9mJ1nB3k",
    "checkout_url": "https://checkout.example/pg/view/checkout"
    "?payment_session_id=session_7Hq2xYl0c4Vd9mJ1nB3k",
    "payment_method": "upi",
    "payment_group": "upi",
    "failure_code": None,
    "failure_reason": None,
    "retry_count": 0,
    "retry_of": None,
    "order_expires_at": "2026-12-07T15:12:03+05:30",
    "paid_at": "2026-12-07T14:42:41+05:30",
    "credited_at": "2026-12-07T14:42:42+05:30",
    "created_at": "2026-12-07T14:42:03+05:30",
    "channel": "order",
    "schedule_date": None,
    "pdn_at": None,
}


class PackOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_PACK_EXAMPLE]})

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "packs": [_PACK_EXAMPLE],
                    "gst_mode": "inclusive",
                    "gst_rate_bp": 1800,
                    "currency": "INR",
                }
            ]
        }
    )

    packs: list[PackOut]
    gst_mode: Literal["inclusive", "exclusive"] = Field(
        description="inclusive: `price_paise` includes GST; exclusive: GST is added to it"
    )
    gst_rate_bp: int = Field(description="The GST rate in basis points (1800: 18%)")
    currency: str = "INR"


class PaymentOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PAYMENT_EXAMPLE]})

    id: uuid.UUID
    order_id: str
    status: Status = Field(
        description="CREATED, then ACTIVE once the order is open at Cashfree; FAILED or "
        "USER_DROPPED after an attempt (retry possible); PAID, then CREDITED once the credits "
        "are granted; EXPIRED or CANCELLED unpaid; REVIEW when Cashfree's figures differ from "
        "ours"
    )
    kind: PaymentKind
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
    channel: Literal["order", "mandate"] = "order"
    schedule_date: date | None = None
    pdn_at: datetime | None = None

    @classmethod
    def of(cls, p: Payment, checkout_url: str | None) -> PaymentOut:
        return cls(
            id=p.id,
            order_id=p.order_id,
            status=p.status,
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
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [PAYMENT_EXAMPLE], "next_cursor": None}]}
    )

    data: list[PaymentOut]
    next_cursor: str | None
