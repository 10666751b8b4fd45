"""SQL for settlements, their transfer attempts and the payout webhooks received."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.gateway.payout_codes import NEEDS_NEW_DETAILS
from commdesk_billing.modules.settlements.model import (
    Attempt,
    AttemptStatus,
    Settlement,
    SettlementStatus,
)

_COLS = (
    "id, payee_id, payable_code, period, cut_off, account_id, beneficiary_id, account_mask, "
    "transfer_mode, payable_paise, reserves_held_paise, reserve_bps, reserve_paise, reserve_until, "
    "gross_paise, tds_bps, tds_paise, tcs_bps, tcs_paise, fee_paise, net_paise, status, "
    "failure_code, failure_reason, utr, journal_id, created_by, created_at, updated_at, "
    "paid_at, ended_at, synced_at"
)
_ATTEMPT_COLS = (
    "id, settlement_id, attempt, transfer_id, amount_paise, status, cf_transfer_id, "
    "cf_status, status_code, utr, created_at, updated_at"
)


def _settlement(row: Row[Any]) -> Settlement:
    f = row._asdict()
    return Settlement(**{**f, "status": SettlementStatus(f["status"])})


def _attempt(row: Row[Any]) -> Attempt:
    f = row._asdict()
    return Attempt(**{**f, "status": AttemptStatus(f["status"])})


async def insert(conn: AsyncConnection, s: Settlement) -> bool:
    """False when the payee has a settlement for this period already."""
    fields = {k: (v.value if isinstance(v, SettlementStatus) else v) for k, v in vars(s).items()}
    names = _COLS.replace(" ", "").split(",")
    result = await conn.execute(
        sql(f"""
        INSERT INTO settlements ({_COLS})
        VALUES ({", ".join(":" + n for n in names)})
        ON CONFLICT (payee_id, period) DO NOTHING"""),
        {n: fields[n] for n in names},
    )
    return result.rowcount == 1


async def get(
    conn: AsyncConnection, settlement_id: uuid.UUID, *, lock: bool = False
) -> Settlement | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLS} FROM settlements WHERE id = :id{' FOR UPDATE' if lock else ''}"),
            {"id": settlement_id},
        )
    ).first()
    return _settlement(row) if row is not None else None


async def of_period(conn: AsyncConnection, payee_id: uuid.UUID, period: str) -> Settlement | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLS} FROM settlements WHERE payee_id = :p AND period = :period"),
            {"p": payee_id, "period": period},
        )
    ).first()
    return _settlement(row) if row is not None else None


async def reserves_held(conn: AsyncConnection, payee_id: uuid.UUID, at: datetime) -> int:
    """Reserves of the payee's live settlements (not failed or reversed: their gross came
    back whole) that are still held at `at`."""
    value = await conn.scalar(
        sql("""
        SELECT coalesce(sum(reserve_paise), 0) FROM settlements
         WHERE payee_id = :p AND reserve_until > :at
           AND status NOT IN ('failed', 'reversed')"""),
        {"p": payee_id, "at": at},
    )
    return int(value or 0)


async def destination_refused(
    conn: AsyncConnection, payee_id: uuid.UUID, account_id: uuid.UUID
) -> bool:
    """Whether a settlement to this account version failed, or was reversed, because the
    destination is wrong (`payout_codes.NEEDS_NEW_DETAILS`): it is not paid there again."""
    found = await conn.scalar(
        sql("""
        SELECT EXISTS (
            SELECT 1 FROM settlements
             WHERE payee_id = :p AND account_id = :a
               AND ((status = 'failed' AND failure_code LIKE 'needs_new_bank_details:%')
                 OR (status = 'reversed'
                     AND upper(failure_code) = ANY(CAST(:codes AS text[])))))"""),
        {"p": payee_id, "a": account_id, "codes": sorted(NEEDS_NEW_DETAILS)},
    )
    return bool(found)


async def of_payee(
    conn: AsyncConnection,
    payee_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[Settlement]:
    """Newest first; `before` a (created_at, id) cursor."""
    at, row_id = before if before else (None, None)
    rows = await conn.execute(
        sql(f"""
        SELECT {_COLS} FROM settlements
         WHERE payee_id = :p
           AND (CAST(:at AS timestamptz) IS NULL OR (created_at, id) < (:at, :row_id))
         ORDER BY created_at DESC, id DESC LIMIT :limit"""),
        {"p": payee_id, "limit": limit, "at": at, "row_id": row_id},
    )
    return [_settlement(r) for r in rows]


async def move(
    conn: AsyncConnection,
    settlement_id: uuid.UUID,
    *,
    to: SettlementStatus,
    allowed: frozenset[SettlementStatus],
    at: datetime,
    utr: str | None = None,
    failure_code: str | None = None,
    failure_reason: str | None = None,
) -> bool:
    """The conditional move: only from a status in `allowed`; False when it was not there
    (a duplicate, or a move another processor made first)."""
    result = await conn.execute(
        sql("""
        UPDATE settlements
           SET status = :to, updated_at = :at,
               utr = coalesce(:utr, utr),
               paid_at = CASE WHEN :to = 'paid' THEN :at ELSE paid_at END,
               ended_at = CASE WHEN :to IN ('failed', 'reversed') THEN :at ELSE ended_at END,
               failure_code = coalesce(:code, failure_code),
               failure_reason = coalesce(:reason, failure_reason)
         WHERE id = :id AND status = ANY(CAST(:allowed AS text[]))"""),
        {
            "id": settlement_id,
            "to": to.value,
            "allowed": [s.value for s in allowed],
            "at": at,
            "utr": utr,
            "code": failure_code,
            "reason": failure_reason[:500] if failure_reason else None,
        },
    )
    return result.rowcount == 1


async def mark_synced(conn: AsyncConnection, settlement_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(
        sql("UPDATE settlements SET synced_at = :at WHERE id = :id"),
        {"id": settlement_id, "at": at},
    )


async def due_for_sync(
    conn: AsyncConnection,
    *,
    older_than: datetime,
    limit: int,
    paid_older_than: datetime | None = None,
    paid_since: datetime | None = None,
) -> list[uuid.UUID]:
    """Settlements in flight not asked about since `older_than`; and, given the two, paid
    ones (paid since `paid_since`) not asked about since `paid_older_than`: a reversal's
    webhook may have been lost. Rows being processed are skipped."""
    rows = await conn.execute(
        sql("""
        SELECT id FROM settlements
         WHERE (status IN ('pending', 'processing') AND synced_at < :t)
            OR (status = 'paid' AND CAST(:paid_t AS timestamptz) IS NOT NULL
                AND synced_at < :paid_t AND paid_at >= :since)
         ORDER BY synced_at LIMIT :limit
         FOR UPDATE SKIP LOCKED"""),
        {"t": older_than, "limit": limit, "paid_t": paid_older_than, "since": paid_since},
    )
    return [r[0] for r in rows]


# --- transfer attempts ----------------------------------------------------------------------


async def insert_attempt(conn: AsyncConnection, a: Attempt) -> None:
    await conn.execute(
        sql(f"""
        INSERT INTO settlement_transfers ({_ATTEMPT_COLS})
        VALUES (:id, :settlement_id, :attempt, :transfer_id, :amount_paise, :status,
                :cf_transfer_id, :cf_status, :status_code, :utr, :created_at, :updated_at)"""),
        {**vars(a), "status": a.status.value},
    )


async def attempts(conn: AsyncConnection, settlement_id: uuid.UUID) -> list[Attempt]:
    rows = await conn.execute(
        sql(f"""
        SELECT {_ATTEMPT_COLS} FROM settlement_transfers
         WHERE settlement_id = :s ORDER BY attempt"""),
        {"s": settlement_id},
    )
    return [_attempt(r) for r in rows]


async def attempt_by_transfer(conn: AsyncConnection, transfer_id: str) -> Attempt | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_ATTEMPT_COLS} FROM settlement_transfers WHERE transfer_id = :t"),
            {"t": transfer_id},
        )
    ).first()
    return _attempt(row) if row is not None else None


async def update_attempt(
    conn: AsyncConnection,
    attempt_id: uuid.UUID,
    *,
    status: AttemptStatus,
    at: datetime,
    cf_transfer_id: str | None,
    cf_status: str | None,
    status_code: str | None,
    utr: str | None,
) -> None:
    await conn.execute(
        sql("""
        UPDATE settlement_transfers
           SET status = :status, updated_at = :at,
               cf_transfer_id = coalesce(:cf, cf_transfer_id),
               cf_status = coalesce(:cfs, cf_status),
               status_code = coalesce(:code, status_code),
               utr = coalesce(:utr, utr)
         WHERE id = :id"""),
        {
            "id": attempt_id,
            "status": status.value,
            "at": at,
            "cf": cf_transfer_id,
            "cfs": cf_status,
            "code": status_code,
            "utr": utr,
        },
    )


# --- payout webhooks --------------------------------------------------------------------------


async def store_webhook(conn: AsyncConnection, fields: dict[str, Any]) -> tuple[uuid.UUID, bool]:
    """(its id, whether this delivery made the row); a repeat only counts itself."""
    row = (
        await conn.execute(
            sql("""
            INSERT INTO payout_webhooks (id, dedupe_key, event_type, transfer_id,
                cf_transfer_id, transfer_status, status_code, settlement_id, raw_body,
                body_sha256, headers, signature_timestamp, outcome)
            VALUES (:id, :key, :type, :transfer_id, :cf, :status, :code, :settlement_id,
                    :raw, :sha, CAST(:headers AS jsonb), :ts, :outcome)
            ON CONFLICT (dedupe_key) DO UPDATE SET repeats = payout_webhooks.repeats + 1
            RETURNING id, (xmax = 0) AS inserted"""),
            {**fields, "id": uuid.uuid4(), "headers": json.dumps(fields["headers"])},
        )
    ).one()
    return row.id, bool(row.inserted)


async def recent(conn: AsyncConnection, *, status: str | None, limit: int) -> list[Settlement]:
    """Every payee's settlements, newest first (the finance console's list). One row a payee
    a period: a small table, read without an index of its own."""
    rows = await conn.execute(
        sql(f"""
        SELECT {_COLS} FROM settlements
         WHERE CAST(:s AS text) IS NULL OR status = :s
         ORDER BY created_at DESC, id DESC LIMIT :limit"""),
        {"s": status, "limit": limit},
    )
    return [_settlement(r) for r in rows]
