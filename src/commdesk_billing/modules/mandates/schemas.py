"""Request and response bodies of the mandates API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt, field_validator

from commdesk_billing.modules.mandates.model import Mandate, MandateStatus, mask_reference
from commdesk_billing.modules.payments.schemas import Email, Phone
from commdesk_billing.security.text import StrictInput
from commdesk_billing.security.timestamps import Timestamp

# RBI's cap on a recurring UPI / card debit without the payer's additional authentication
# (cashfree.md §12.6, §15): a mandate above it could not debit automatically.
MAX_PER_DEBIT_PAISE = 15_000_00
# A mandate must outlive at least one debit (notice, then a debit no sooner than the next
# day) and Cashfree refuses an expiry in the past (`subscription_expiry_time_invalid`);
# thirty years is beyond any mandate a bank issues.
MIN_VALIDITY = timedelta(days=2)
MAX_VALIDITY = timedelta(days=365 * 30)


class MandateRequest(StrictInput):
    max_amount_paise: Annotated[StrictInt, Field(ge=100, le=10**10)] = Field(
        description="The most one debit may take, in paise; at most 1500000 (₹15,000) for "
        "UPI AutoPay and cards"
    )
    customer_phone: Phone
    customer_email: Email
    valid_until: Timestamp | None = Field(
        None,
        description="When the mandate ends (default: ten years at Cashfree); at least two "
        "days and at most thirty years from now",
    )

    @field_validator("valid_until")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        now = datetime.now(UTC)
        if not now + MIN_VALIDITY <= value <= now + MAX_VALIDITY:
            raise ValueError("must be at least two days and at most thirty years from now")
        return value


# While these, the member still has to authorise the mandate.
_WAITING = frozenset({MandateStatus.PENDING, MandateStatus.FAILED})


class MandateOut(BaseModel):
    id: uuid.UUID
    status: MandateStatus = Field(
        description="pending until the member authorises it, then active; paused, revoked, "
        "failed (declined: the link still works), expired or completed"
    )
    max_amount_paise: int
    valid_until: datetime | None
    authorization_url: str | None = Field(
        description="Where the member authorises the mandate (UPI AutoPay or card); null "
        "once it no longer waits for authorisation"
    )
    subscription_session_id: str | None = Field(
        description="Cashfree's session for the authorisation, for its JS SDK "
        "(`subscriptionsCheckout({subsSessionId})`); null once it no longer waits for it"
    )
    authorization_reference: str | None = Field(
        description="The bank's reference of an authorised mandate (UMN for UPI, an "
        "enrolment id for cards), masked"
    )
    payment_method: str | None
    cashfree_status: str | None
    subscription_id: str
    revoked_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, m: Mandate, authorization_url: str | None) -> MandateOut:
        return cls(
            id=m.id,
            status=m.status.value,
            max_amount_paise=m.max_amount_paise,
            valid_until=m.valid_until,
            authorization_url=authorization_url,
            subscription_session_id=m.session_id if m.status in _WAITING else None,
            authorization_reference=mask_reference(m.auth_reference),
            payment_method=m.payment_method,
            cashfree_status=m.cashfree_status,
            subscription_id=m.subscription_id,
            revoked_by=m.revoked_by,
            created_at=m.created_at,
            updated_at=m.updated_at,
        )


class MandateList(BaseModel):
    data: list[MandateOut]
