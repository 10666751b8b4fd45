"""Billing profiles: who a buyer is on a tax invoice (legal name, address, GST state and,
for a registered business, its GSTIN). Owned by the user; read by ordering, which copies it
into the payment (`BuyerDetails.snapshot`), so an invoice never changes with the profile."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql


@dataclass(frozen=True)
class BillingProfile:
    user_id: uuid.UUID
    legal_name: str
    address_line1: str
    address_line2: str | None
    city: str
    postal_code: str
    state_code: str
    gstin: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def address(self) -> str:
        parts = [self.address_line1, self.address_line2, f"{self.city} {self.postal_code}"]
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class BuyerDetails:
    """What an order copies from the profile: printed on its invoice and credit notes."""

    legal_name: str
    address: str
    state_code: str
    gstin: str | None

    @classmethod
    def of(cls, profile: BillingProfile) -> BuyerDetails:
        return cls(profile.legal_name, profile.address, profile.state_code, profile.gstin)

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_snapshot(cls, data: object) -> BuyerDetails | None:
        if not isinstance(data, dict):
            return None
        return cls(
            legal_name=str(data["legal_name"]),
            address=str(data["address"]),
            state_code=str(data["state_code"]),
            gstin=data.get("gstin") or None,
        )


_COLUMNS = (
    "user_id, legal_name, address_line1, address_line2, city, postal_code, state_code, gstin, "
    "created_at, updated_at"
)


async def get(conn: AsyncConnection, user_id: uuid.UUID) -> BillingProfile | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM billing_profiles WHERE user_id = :u"), {"u": user_id}
        )
    ).first()
    return None if row is None else BillingProfile(**row._asdict())


async def put(conn: AsyncConnection, user_id: uuid.UUID, values: dict[str, Any]) -> BillingProfile:
    """Create or replace the user's profile (a PUT: every field as given)."""
    row = (
        await conn.execute(
            sql(f"""
            INSERT INTO billing_profiles (user_id, legal_name, address_line1, address_line2,
                                          city, postal_code, state_code, gstin)
            VALUES (:user_id, :legal_name, :address_line1, :address_line2, :city,
                    :postal_code, :state_code, :gstin)
            ON CONFLICT (user_id) DO UPDATE SET
                legal_name = EXCLUDED.legal_name, address_line1 = EXCLUDED.address_line1,
                address_line2 = EXCLUDED.address_line2, city = EXCLUDED.city,
                postal_code = EXCLUDED.postal_code, state_code = EXCLUDED.state_code,
                gstin = EXCLUDED.gstin, updated_at = now()
            RETURNING {_COLUMNS}"""),
            {"user_id": user_id, **values},
        )
    ).one()
    return BillingProfile(**row._asdict())


async def buyer_on_file(conn: AsyncConnection, user_id: uuid.UUID) -> BuyerDetails | None:
    profile = await get(conn, user_id)
    return None if profile is None else BuyerDetails.of(profile)
