"""Request and response bodies of the Easy Split vendor routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from commdesk_billing.modules.payees.model import PayoutMethod
from commdesk_billing.modules.payments.schemas import Email
from commdesk_billing.modules.splits.model import SplitVendor
from commdesk_billing.security.text import StrictInput

# What Cashfree takes in a vendor's name (cashfree.md §6.1: specials `. / - &` only).
VendorName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9 ./&-]{1,100}$")]


class VendorRequest(StrictInput):
    """What finance supplies to register a community as a vendor. The bank account (or VPA)
    and its holder are the community payee's current, verified payout account; they are
    never sent in the body."""

    name: VendorName = Field(description="The vendor's name at Cashfree")
    email: Email
    phone: Annotated[StrictStr, Field(pattern=r"^[6-9][0-9]{9}$")] = Field(
        description="An Indian mobile number, 10 digits"
    )
    account_type: Literal["BUSINESS", "INDIVIDUAL"]
    business_type: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9 ./&-]{1,60}$")] = Field(
        description="e.g. `Education`, `NGO`, `Sole Proprietorship`"
    )
    pan: Annotated[StrictStr, Field(pattern=r"^[A-Z]{5}[0-9]{4}[A-Z]$")] = Field(
        description="The PAN of the community's organizer (kept masked once sent)"
    )
    gstin: (
        Annotated[StrictStr, Field(pattern=r"^[0-9]{2}[A-Z]{5}[0-9]{4}[A-Z][1-9A-Z]Z[0-9A-Z]$")]
        | None
    ) = Field(None, description="Its GSTIN, when registered for GST")


class VendorOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "community_id": "chess-club",
                    "vendor_id": "cdbc_5d1f0c9e7a10b6c2d1e8f4a4c3b9a552f1f0c9e7",
                    "status": "ACTIVE",
                    "active": True,
                    "remarks": None,
                    "method": "bank",
                    "account_mask": "XXXXXXXX4321",
                    "name": "Chess Club Society",
                    "account_type": "BUSINESS",
                    "business_type": "NGO",
                    "pan_mask": "XXXXXX234F",
                    "gstin": "29ABCDE1234F1Z5",
                    "status_checked_at": "2026-12-07T10:00:00Z",
                    "created_at": "2026-12-01T09:00:00Z",
                    "updated_at": "2026-12-07T10:00:00Z",
                }
            ]
        }
    )

    community_id: str
    vendor_id: str = Field(description="Ours at Cashfree, derived from the community's id")
    status: str = Field(description="Cashfree's: IN_BENE_CREATION, ACTIVE, BLOCKED, DELETED")
    active: bool = Field(description="Takes split sponsorships now")
    remarks: str | None
    method: PayoutMethod = Field(description="How the payout account is paid: bank or upi")
    account_mask: str
    name: str
    account_type: Literal["BUSINESS", "INDIVIDUAL"]
    business_type: str
    pan_mask: str
    gstin: str | None
    status_checked_at: datetime
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, v: SplitVendor) -> VendorOut:
        return cls(
            community_id=v.community_id,
            vendor_id=v.vendor_id,
            status=v.status,
            active=v.active,
            remarks=v.remarks,
            method=v.method,
            account_mask=v.account_mask,
            name=v.name,
            account_type=v.account_type,
            business_type=v.business_type,
            pan_mask=v.pan_mask,
            gstin=v.gstin,
            status_checked_at=v.status_checked_at,
            created_at=v.created_at,
            updated_at=v.updated_at,
        )
