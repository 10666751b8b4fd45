"""SQL for Easy Split vendors, vendor settlements and their webhooks.

Locks: a vendor's row (`get(..., lock=True)`) while it is registered or refreshed; a
settlement's row while a webhook of it is applied (inserted first if new, so two deliveries
of one settlement queue on the same row)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.splits.model import SettlementStatus, SplitVendor, VendorSettlement

_VENDOR_COLS = (
    "community_id, vendor_id, payee_id, account_id, method, account_mask, name, email, "
    "phone, account_type, business_type, pan_mask, gstin, status, remarks, "
    "status_checked_at, created_by, created_at, updated_at"
)
_SETTLEMENT_COLS = (
    "settlement_id, vendor_id, community_id, amount_paise, status, utr, reason, "
    "settled_journal_id, reversed_journal_id, created_at, updated_at"
)


async def get(
    conn: AsyncConnection, community_id: str, *, lock: bool = False
) -> SplitVendor | None:
    row = (
        await conn.execute(
            sql(
                f"SELECT {_VENDOR_COLS} FROM split_vendors WHERE community_id = :c"
                + (" FOR UPDATE" if lock else "")
            ),
            {"c": community_id},
        )
    ).first()
    return SplitVendor.from_row(row) if row else None


async def by_vendor_id(conn: AsyncConnection, vendor_id: str) -> SplitVendor | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_VENDOR_COLS} FROM split_vendors WHERE vendor_id = :v"),
            {"v": vendor_id},
        )
    ).first()
    return SplitVendor.from_row(row) if row else None


async def upsert(conn: AsyncConnection, v: SplitVendor) -> SplitVendor:
    """The vendor as registered now (a first registration, or the account or KYC details
    changed and sent again); `created_*` stay the first one's."""
    row = (
        await conn.execute(
            sql(f"""
            INSERT INTO split_vendors ({_VENDOR_COLS})
            VALUES (:community_id, :vendor_id, :payee_id, :account_id, :method, :account_mask,
                    :name, :email, :phone, :account_type, :business_type, :pan_mask, :gstin,
                    :status, :remarks, :status_checked_at, :created_by, now(), now())
            ON CONFLICT (community_id) DO UPDATE SET
                payee_id = EXCLUDED.payee_id, account_id = EXCLUDED.account_id,
                method = EXCLUDED.method, account_mask = EXCLUDED.account_mask,
                name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone,
                account_type = EXCLUDED.account_type, business_type = EXCLUDED.business_type,
                pan_mask = EXCLUDED.pan_mask, gstin = EXCLUDED.gstin,
                status = EXCLUDED.status, remarks = EXCLUDED.remarks,
                status_checked_at = EXCLUDED.status_checked_at, updated_at = now()
            RETURNING {_VENDOR_COLS}"""),
            {
                "community_id": v.community_id,
                "vendor_id": v.vendor_id,
                "payee_id": v.payee_id,
                "account_id": v.account_id,
                "method": v.method,
                "account_mask": v.account_mask,
                "name": v.name,
                "email": v.email,
                "phone": v.phone,
                "account_type": v.account_type,
                "business_type": v.business_type,
                "pan_mask": v.pan_mask,
                "gstin": v.gstin,
                "status": v.status,
                "remarks": v.remarks,
                "status_checked_at": v.status_checked_at,
                "created_by": v.created_by,
            },
        )
    ).one()
    return SplitVendor.from_row(row)


async def set_status(
    conn: AsyncConnection, community_id: str, status: str, remarks: str | None, at: datetime
) -> SplitVendor | None:
    row = (
        await conn.execute(
            sql(f"""
            UPDATE split_vendors SET status = :s, remarks = :r, status_checked_at = :at,
                                     updated_at = now()
             WHERE community_id = :c
            RETURNING {_VENDOR_COLS}"""),
            {"c": community_id, "s": status, "r": remarks, "at": at},
        )
    ).first()
    return SplitVendor.from_row(row) if row else None


async def waiting(conn: AsyncConnection, limit: int) -> list[str]:
    """Communities whose vendor is still in KYC, the longest unchecked first."""
    rows = await conn.execute(
        sql("""
        SELECT community_id FROM split_vendors WHERE status = 'IN_BENE_CREATION'
         ORDER BY status_checked_at LIMIT :n"""),
        {"n": limit},
    )
    return [str(r[0]) for r in rows]


# --- settlements -------------------------------------------------------------------------------


async def lock_settlement(
    conn: AsyncConnection,
    *,
    settlement_id: str,
    vendor_id: str,
    community_id: str,
    amount_paise: int,
) -> tuple[VendorSettlement, bool]:
    """The settlement's row, locked: inserted CREATED if this is its first word (and True),
    else as it is; the caller then moves it on."""
    inserted = (
        await conn.execute(
            sql("""
            INSERT INTO vendor_settlements (settlement_id, vendor_id, community_id,
                                            amount_paise, status)
            VALUES (:id, :v, :c, :a, :s)
            ON CONFLICT (settlement_id) DO NOTHING
            RETURNING settlement_id"""),
            {
                "id": settlement_id,
                "v": vendor_id,
                "c": community_id,
                "a": amount_paise,
                "s": SettlementStatus.created.value,
            },
        )
    ).first()
    row = (
        await conn.execute(
            sql(
                f"SELECT {_SETTLEMENT_COLS} FROM vendor_settlements "
                "WHERE settlement_id = :id FOR UPDATE"
            ),
            {"id": settlement_id},
        )
    ).one()
    return VendorSettlement.from_row(row), inserted is not None


async def move_settlement(
    conn: AsyncConnection,
    settlement_id: str,
    *,
    to: SettlementStatus,
    amount_paise: int,
    utr: str | None,
    reason: str | None,
    settled_journal_id: uuid.UUID | None = None,
    reversed_journal_id: uuid.UUID | None = None,
) -> None:
    await conn.execute(
        sql("""
        UPDATE vendor_settlements
           SET status = :s, amount_paise = :a, utr = coalesce(:u, utr),
               reason = coalesce(:r, reason),
               settled_journal_id = coalesce(:sj, settled_journal_id),
               reversed_journal_id = coalesce(:rj, reversed_journal_id), updated_at = now()
         WHERE settlement_id = :id"""),
        {
            "id": settlement_id,
            "s": to.value,
            "a": amount_paise,
            "u": utr,
            "r": reason,
            "sj": settled_journal_id,
            "rj": reversed_journal_id,
        },
    )


async def settlements_of(conn: AsyncConnection, vendor_id: str) -> list[VendorSettlement]:
    rows = await conn.execute(
        sql(f"""
        SELECT {_SETTLEMENT_COLS} FROM vendor_settlements WHERE vendor_id = :v
         ORDER BY created_at DESC LIMIT 100"""),
        {"v": vendor_id},
    )
    return [VendorSettlement.from_row(r) for r in rows]


# --- webhook deliveries ------------------------------------------------------------------------


async def store_delivery(conn: AsyncConnection, values: dict[str, Any]) -> uuid.UUID | None:
    """The delivery's row, once per dedupe key: its id, or None when one was stored under
    the key before (its repeat counter is bumped instead)."""
    row = (
        await conn.execute(
            sql("""
            INSERT INTO vendor_settlement_webhooks (id, dedupe_key, event_type, settlement_id,
                                                    vendor_id, raw_body, headers, outcome)
            VALUES (:id, :key, :type, :sid, :vid, :raw, CAST(:headers AS jsonb), :outcome)
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id"""),
            {**values, "headers": json.dumps(values["headers"])},
        )
    ).first()
    if row is not None:
        return uuid.UUID(str(row[0]))
    await conn.execute(
        sql("""
        UPDATE vendor_settlement_webhooks
           SET duplicates = duplicates + 1, last_seen_at = now()
         WHERE dedupe_key = :key"""),
        {"key": values["key"]},
    )
    return None


async def set_outcome(conn: AsyncConnection, webhook_id: uuid.UUID, outcome: str) -> None:
    await conn.execute(
        sql("UPDATE vendor_settlement_webhooks SET outcome = :o WHERE id = :id"),
        {"id": webhook_id, "o": outcome[:500]},
    )
