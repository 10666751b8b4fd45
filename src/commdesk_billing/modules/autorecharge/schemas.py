"""Request and response bodies of the auto-recharge API (strict: no "5" for 5)."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictBool, StrictInt, model_validator

from commdesk_billing.modules.autorecharge.model import Decision, RechargeSettings
from commdesk_billing.modules.payments.schemas import Email, PackCode, Phone
from commdesk_billing.security.text import StrictInput

Count = Annotated[StrictInt, Field(ge=1, le=1000)]
Paise = Annotated[StrictInt, Field(ge=100, le=10**10)]


class AutoRechargeRequest(StrictInput):
    enabled: StrictBool
    threshold: Annotated[StrictInt, Field(ge=0, le=10**9)] = 200
    pack_code: PackCode | None = Field(None, description="A pack from GET /v1/packs")
    amount_paise: Paise | None = Field(
        None, description="A custom top-up in whole rupees, within the configured limits"
    )
    customer_phone: Phone
    customer_email: Email | None = None
    max_recharges_per_day: Count | None = None
    max_recharges_per_month: Count | None = None
    max_paise_per_day: Paise | None = None
    max_paise_per_month: Paise | None = None
    max_consecutive_failures: Annotated[StrictInt, Field(ge=1, le=20)] = 3
    mandate_id: uuid.UUID | None = Field(
        None,
        description="The owner's own mandate (POST /v1/mandates), pending or active: "
        "recharges are charged on it once active",
    )

    @model_validator(mode="after")
    def _one_of(self) -> AutoRechargeRequest:
        if (self.pack_code is None) == (self.amount_paise is None):
            raise ValueError("give exactly one of pack_code and amount_paise")
        return self


class AutoRechargeOut(BaseModel):
    wallet_id: uuid.UUID
    enabled: bool
    threshold: int
    trigger_level: int | None  # the effective level now (None: off)
    burn_credits_per_hour: int
    pack_code: str | None
    amount_paise: int | None
    customer_phone: str
    customer_email: str | None
    max_recharges_per_day: int | None
    max_recharges_per_month: int | None
    max_paise_per_day: int | None
    max_paise_per_month: int | None
    max_consecutive_failures: int
    consecutive_failures: int
    backoff_until: datetime | None
    mandate_id: uuid.UUID | None
    pending_credits: int
    updated_at: datetime

    @classmethod
    def of(
        cls, s: RechargeSettings, *, trigger_level: int | None, pending_credits: int
    ) -> AutoRechargeOut:
        return cls(
            wallet_id=s.wallet_id,
            enabled=s.enabled,
            threshold=s.threshold,
            trigger_level=trigger_level,
            burn_credits_per_hour=s.burn_credits_per_hour,
            pack_code=s.pack_code,
            amount_paise=s.amount_paise,
            customer_phone=s.customer_phone,
            customer_email=s.customer_email,
            max_recharges_per_day=s.max_recharges_per_day,
            max_recharges_per_month=s.max_recharges_per_month,
            max_paise_per_day=s.max_paise_per_day,
            max_paise_per_month=s.max_paise_per_month,
            max_consecutive_failures=s.max_consecutive_failures,
            consecutive_failures=s.consecutive_failures,
            backoff_until=s.backoff_until,
            mandate_id=s.mandate_id,
            pending_credits=pending_credits,
            updated_at=s.updated_at,
        )


class DecisionOut(BaseModel):
    id: int
    recharge_id: uuid.UUID | None
    decision: str
    reason: str | None
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, d: Decision) -> DecisionOut:
        return cls(
            id=d.id,
            recharge_id=d.recharge_id,
            decision=d.decision,
            reason=d.reason,
            data=d.data,
            created_at=d.created_at,
        )


class DecisionPage(BaseModel):
    data: list[DecisionOut]
    next_cursor: str | None


def encode_cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"are:{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Raises ValueError for anything that is not a cursor of this list."""
    if len(cursor) > 64:
        raise ValueError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not valid") from exc
    prefix, _, number = raw.partition(":")
    if prefix != "are" or not (number.isascii() and number.isdigit()) or len(number) > 18:
        raise ValueError("cursor is not valid")
    return int(number)
