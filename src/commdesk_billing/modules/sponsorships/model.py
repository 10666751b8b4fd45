"""Sponsorships and their milestones, as the service sees them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class SponsorshipPath(StrEnum):
    """Where the community's part goes. `escrow`: we hold it and release it to the
    community's payable per milestone. `split`: the order carries it as the community's
    Easy Split share and Cashfree settles it to the community (an ACTIVE vendor) directly;
    its milestones are informational (nothing is released)."""

    escrow = "escrow"
    easy_split = "split"  # (`split` would shadow str.split)


class SponsorshipStatus(StrEnum):
    awaiting_payment = "awaiting_payment"  # the sponsor's order is open, or closed unpaid
    funded = "funded"  # paid: the community's part is in escrow
    completed = "completed"  # every milestone released


class MilestoneStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"  # the community's owner says it is done
    released = "released"  # finance or the sponsor approved: the money is the community's
    refunding = "refunding"  # named by a refund Cashfree has not finished
    refunded = "refunded"  # its money went back to the sponsor


# Milestones whose money is still in escrow, and which can still be delivered, released or
# refunded (refunding ones are in escrow but spoken for).
IN_ESCROW = frozenset(
    {MilestoneStatus.pending, MilestoneStatus.delivered, MilestoneStatus.refunding}
)
REFUNDABLE = frozenset({MilestoneStatus.pending, MilestoneStatus.delivered})


@dataclass(frozen=True)
class Milestone:
    sponsorship_id: uuid.UUID
    seq: int
    title: str
    amount_paise: int
    status: MilestoneStatus
    delivered_at: datetime | None
    delivered_by: str | None
    released_at: datetime | None
    released_by: str | None
    release_journal_id: uuid.UUID | None
    refund_id: uuid.UUID | None

    @classmethod
    def from_row(cls, row: Any) -> Milestone:
        data = dict(row._asdict())
        data["status"] = MilestoneStatus(data["status"])
        return cls(**data)


@dataclass(frozen=True)
class Sponsorship:
    id: uuid.UUID
    payment_id: uuid.UUID
    community_id: str
    sponsor_user_id: uuid.UUID
    path: SponsorshipPath
    purpose: str
    amount_paise: int  # the community's whole part (Σ milestones)
    fee_bps: int
    fee_paise: int
    gst_paise: int
    total_paise: int  # what the sponsor pays: amount + fee + GST on the fee
    status: SponsorshipStatus
    funded_at: datetime | None
    funded_journal_id: uuid.UUID | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    # The split path only: the community's vendor at Cashfree, and what successful refunds
    # returned of the community's part (taken back from the vendor).
    vendor_id: str | None = None
    split_refunded_paise: int = 0

    @property
    def split(self) -> bool:
        return self.path is SponsorshipPath.easy_split

    @classmethod
    def from_row(cls, row: Any) -> Sponsorship:
        data = dict(row._asdict())
        data["path"] = SponsorshipPath(data["path"])
        data["status"] = SponsorshipStatus(data["status"])
        return cls(**data)
