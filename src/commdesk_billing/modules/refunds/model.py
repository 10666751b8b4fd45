"""Refund rows and the refund state machine.

    CREATED ──Cashfree accepted──▶ PENDING ──▶ SUCCESS   (credits taken back, journals posted)
       │                             │  ▲
       │                             ▼  │
       │                            ONHOLD ─▶ CANCELLED  (credits returned)
       ├──Cashfree refused the request──▶ FAILED        (credits returned; nothing was sent)
       └──Cashfree answered with an end state at once──▶ SUCCESS / CANCELLED

CREATED means the credits are held and Cashfree has not (to our knowledge) accepted the
refund. A refund leaves CREATED for FAILED only on Cashfree's explicit refusal of the
request; an unanswered call leaves it CREATED, and it is asked again, never given up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from commdesk_billing.modules.refunds.allocation import Parts


class RefundStatus(StrEnum):
    CREATED = "CREATED"
    PENDING = "PENDING"
    ONHOLD = "ONHOLD"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


R = RefundStatus
# to-status -> the statuses it may be reached from
ALLOWED: dict[RefundStatus, frozenset[RefundStatus]] = {
    R.PENDING: frozenset({R.CREATED, R.ONHOLD}),
    R.ONHOLD: frozenset({R.CREATED, R.PENDING}),
    R.SUCCESS: frozenset({R.CREATED, R.PENDING, R.ONHOLD}),
    R.FAILED: frozenset({R.CREATED}),
    R.CANCELLED: frozenset({R.CREATED, R.PENDING, R.ONHOLD}),
}
OPEN = frozenset({R.CREATED, R.PENDING, R.ONHOLD})
# Refunds that count against what is left of a payment.
STANDING = frozenset({R.CREATED, R.PENDING, R.ONHOLD, R.SUCCESS})


@dataclass(frozen=True)
class Refund:
    id: uuid.UUID
    refund_ref: str
    payment_id: uuid.UUID
    wallet_id: uuid.UUID
    order_id: str
    idempotency_key: str
    requested_by: str
    requested_role: str
    reason: str
    amount_paise: int
    taxable_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    base_credits: int
    bonus_credits: int
    purchase_lot_id: uuid.UUID | None  # None: a passthrough refund (no credits)
    bonus_lot_id: uuid.UUID | None
    hold_id: uuid.UUID | None
    status: RefundStatus
    cf_refund_id: str | None
    refund_arn: str | None
    gateway_status: str | None
    status_description: str | None
    failure_reason: str | None
    review_reason: str | None
    sync_count: int
    last_synced_at: datetime | None
    processed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # What the refund returns of money collected for someone else (a sponsorship's escrow);
    # such a refund takes no credits (`purchase_lot_id` is None) and holds none.
    passthrough_paise: int
    # The refund returns what a service was paid with (an INR subscription period): no
    # credits, no hold, no passthrough (`periods.py`).
    of_service: bool = False

    @property
    def is_passthrough(self) -> bool:
        return self.purchase_lot_id is None and not self.of_service

    @classmethod
    def from_row(cls, row: Any) -> Refund:
        data = dict(row._asdict())
        data["status"] = RefundStatus(data["status"])
        return cls(**data)

    @property
    def parts(self) -> Parts:
        return Parts(
            amount_paise=self.amount_paise,
            taxable_paise=self.taxable_paise,
            cgst_paise=self.cgst_paise,
            sgst_paise=self.sgst_paise,
            igst_paise=self.igst_paise,
            base_credits=self.base_credits,
            bonus_credits=self.bonus_credits,
        )

    @property
    def takes(self) -> list[tuple[uuid.UUID, int]]:
        """The lots this refund takes credits back from, and how many from each."""
        out = []
        if self.base_credits and self.purchase_lot_id is not None:
            out.append((self.purchase_lot_id, self.base_credits))
        if self.bonus_credits and self.bonus_lot_id is not None:
            out.append((self.bonus_lot_id, self.bonus_credits))
        return out
