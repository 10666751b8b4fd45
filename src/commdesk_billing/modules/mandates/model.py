"""A mandate as the service sees it, and how Cashfree's statuses map onto ours."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class MandateStatus(StrEnum):
    PENDING = "pending"  # created; the payer has not authorised it (yet)
    ACTIVE = "active"  # authorised: charges may be raised on it
    PAUSED = "paused"  # the payer (or the bank, after a failed card debit) paused it
    REVOKED = "revoked"  # cancelled by the member (here or at their bank) or by us
    FAILED = "failed"  # the payer declined the authorisation (the link may still be used)
    EXPIRED = "expired"  # the authorisation link, the mandate or its card expired
    COMPLETED = "completed"  # its validity or cycles are over


M = MandateStatus
# Never left on our side: a later answer from Cashfree is recorded, not applied.
FINAL = frozenset({M.REVOKED, M.EXPIRED, M.COMPLETED})
# Asked about by the sync job.
OPEN = frozenset({M.PENDING, M.ACTIVE, M.PAUSED, M.FAILED})

# Cashfree's subscription_status (cashfree.md §12.4) → ours.
_BY_SUBSCRIPTION = {
    "INITIALIZED": M.PENDING,
    "BANK_APPROVAL_PENDING": M.PENDING,
    "ACTIVE": M.ACTIVE,
    "ON_HOLD": M.PAUSED,
    "PAUSED": M.PAUSED,
    "CUSTOMER_PAUSED": M.PAUSED,
    "CUSTOMER_CANCELLED": M.REVOKED,
    "CANCELLED": M.REVOKED,
    "COMPLETED": M.COMPLETED,
    "EXPIRED": M.EXPIRED,
    "LINK_EXPIRED": M.EXPIRED,
    "CARD_EXPIRED": M.EXPIRED,
}


def status_from_cashfree(subscription_status: str, auth_status: str | None) -> MandateStatus | None:
    """Our status for what Cashfree's API says; None for a status we do not know (the
    mandate keeps the one it has). A declined authorisation leaves the subscription
    INITIALIZED at Cashfree (the payer may try again): that is `failed` here until then."""
    mapped = _BY_SUBSCRIPTION.get(subscription_status)
    if mapped is M.PENDING and auth_status == "FAILED":
        return M.FAILED
    return mapped


def mask_reference(reference: str | None) -> str | None:
    """A UMN / enrolment id shown with its ends only when long."""
    if not reference:
        return None
    if len(reference) <= 10:
        return reference
    return reference[:4] + "…" + reference[-4:]


@dataclass(frozen=True)
class Mandate:
    id: uuid.UUID
    user_id: uuid.UUID
    idempotency_key: str
    request_hash: str
    subscription_id: str
    cf_subscription_id: str | None
    session_id: str | None
    max_amount_paise: int
    customer_phone: str
    valid_until: datetime | None
    status: MandateStatus
    cashfree_status: str | None
    auth_status: str | None
    auth_reference: str | None
    payment_method: str | None
    revoked_by: str | None
    refreshed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def usable(self) -> bool:
        return self.status is M.ACTIVE

    @classmethod
    def from_row(cls, row: Any) -> Mandate:
        data = dict(row._mapping)
        data["status"] = MandateStatus(data["status"])
        return cls(**data)
