"""SQL on the fraud module's tables: assessments, lists, reviews (and reads of its events)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql

# --- assessments (and the SQL side of the velocity windows) ---------------------------

_DIMENSIONS = {"user": "user_id", "ip": "ip", "device": "device_id", "instrument": "instrument"}


_INSERT_ASSESSMENT = """
        INSERT INTO fraud_assessments (id, stage, user_id, payment_id, ip, device_id,
                                       instrument, amount_paise, score, action, rules, listed)
        VALUES (:id, :stage, :user_id, :payment_id, :ip, :device_id, :instrument,
                :amount_paise, :score, :action, :rules, :listed)
        ON CONFLICT (payment_id, stage) WHERE payment_id IS NOT NULL DO NOTHING"""


async def insert_assessment(
    conn: AsyncConnection, row: dict[str, Any], events: list[dict[str, Any]]
) -> bool:
    """The assessment and the `fraud_events` of the rules that fired (each `events` item:
    id, kind, severity, details), in one statement; the events only with a new assessment.
    False: this payment was already scored at this stage (a redelivery), nothing written."""
    if not events:
        result = await conn.execute(sql(_INSERT_ASSESSMENT), row)
        return bool(result.rowcount)
    fresh = (
        await conn.execute(
            sql(f"""
            WITH a AS ({_INSERT_ASSESSMENT} RETURNING id),
            e AS (
                INSERT INTO fraud_events (id, kind, severity, payment_id, user_id, details)
                SELECT e.id, e.kind, e.severity, :payment_id, :user_id, CAST(e.details AS jsonb)
                  FROM unnest(CAST(:e_ids AS uuid[]), CAST(:e_kinds AS text[]),
                              CAST(:e_severities AS text[]), CAST(:e_details AS text[]))
                       AS e(id, kind, severity, details)
                 WHERE EXISTS (SELECT 1 FROM a))
            SELECT count(*) FROM a"""),
            {
                **row,
                "e_ids": [e["id"] for e in events],
                "e_kinds": [e["kind"] for e in events],
                "e_severities": [e["severity"] for e in events],
                "e_details": [json.dumps(e["details"], default=str) for e in events],
            },
        )
    ).scalar_one()
    return bool(fresh)


async def count_since(conn: AsyncConnection, dimension: str, value: str, since: datetime) -> int:
    """Attempts seen on one user / IP / device / instrument since `since`."""
    column = _DIMENSIONS[dimension]
    n = (
        await conn.execute(
            sql(f"""
            SELECT count(*) FROM fraud_assessments
             WHERE {column} = CAST(:v AS {"uuid" if column == "user_id" else "text"})
               AND created_at >= :since"""),
            {"v": value, "since": since},
        )
    ).scalar_one()
    return int(n)


async def accounts_since(
    conn: AsyncConnection, dimension: str, value: str, since: datetime
) -> set[str]:
    """The distinct buyers seen on one device / instrument since `since`."""
    column = _DIMENSIONS[dimension]
    rows = (
        await conn.execute(
            sql(f"""
            SELECT DISTINCT user_id FROM fraud_assessments
             WHERE {column} = :v AND created_at >= :since"""),
            {"v": value, "since": since},
        )
    ).all()
    return {str(r.user_id) for r in rows}


async def assessments_of_user(
    conn: AsyncConnection, user_id: uuid.UUID, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sql("""
        SELECT id, stage, payment_id, ip, device_id, instrument, amount_paise, score, action,
               rules, listed, created_at
          FROM fraud_assessments WHERE user_id = :u
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
        {"u": user_id, "n": limit},
    )
    return [dict(r._mapping) for r in rows]


# --- events ------------------------------------------------------------------------------


async def count_events(
    conn: AsyncConnection, user_id: uuid.UUID, kinds: list[str], since: datetime
) -> int:
    n = (
        await conn.execute(
            sql("""
            SELECT count(*) FROM fraud_events
             WHERE user_id = :u AND kind = ANY(:k) AND created_at >= :since"""),
            {"u": user_id, "k": kinds, "since": since},
        )
    ).scalar_one()
    return int(n)


async def events_of_user(
    conn: AsyncConnection, user_id: uuid.UUID, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sql("""
        SELECT id, kind, severity, payment_id, details, created_at FROM fraud_events
         WHERE user_id = :u ORDER BY created_at DESC, id DESC LIMIT :n"""),
        {"u": user_id, "n": limit},
    )
    return [dict(r._mapping) for r in rows]


# --- lists -------------------------------------------------------------------------------


async def listed(conn: AsyncConnection, entries: list[tuple[str, str]]) -> dict[str, str]:
    """For (kind, value) pairs: which list each that is on names it, kind -> list."""
    if not entries:
        return {}
    rows = (
        await conn.execute(
            sql("""
            SELECT l.kind, l.list FROM fraud_lists l
              JOIN unnest(CAST(:kinds AS text[]), CAST(:values AS text[])) AS e(kind, value)
                ON e.kind = l.kind AND e.value = l.value"""),
            {"kinds": [k for k, _ in entries], "values": [v for _, v in entries]},
        )
    ).all()
    return {r.kind: r.list for r in rows}


async def add_entry(conn: AsyncConnection, row: dict[str, Any]) -> dict[str, Any] | None:
    """None: the (kind, value) is already on a list."""
    found = (
        await conn.execute(
            sql("""
            INSERT INTO fraud_lists (id, list, kind, value, reason, created_by)
            VALUES (:id, :list, :kind, :value, :reason, :created_by)
            ON CONFLICT (kind, value) DO NOTHING
            RETURNING id, list, kind, value, reason, created_by, created_at"""),
            row,
        )
    ).first()
    return None if found is None else dict(found._mapping)


async def entry_by_value(conn: AsyncConnection, kind: str, value: str) -> dict[str, Any] | None:
    found = (
        await conn.execute(
            sql("""
            SELECT id, list, kind, value, reason, created_by, created_at FROM fraud_lists
             WHERE kind = :k AND value = :v"""),
            {"k": kind, "v": value},
        )
    ).first()
    return None if found is None else dict(found._mapping)


async def delete_entry(conn: AsyncConnection, entry_id: uuid.UUID) -> dict[str, Any] | None:
    found = (
        await conn.execute(
            sql("""
            DELETE FROM fraud_lists WHERE id = :id
            RETURNING id, list, kind, value, reason, created_by, created_at"""),
            {"id": entry_id},
        )
    ).first()
    return None if found is None else dict(found._mapping)


async def list_entries(
    conn: AsyncConnection, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sql("""
        SELECT id, list, kind, value, reason, created_by, created_at FROM fraud_lists
         WHERE CAST(:at AS timestamptz) IS NULL
            OR (created_at, id) < (CAST(:at AS timestamptz), CAST(:id AS uuid))
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
        {"at": after[0] if after else None, "id": after[1] if after else None, "n": limit},
    )
    return [dict(r._mapping) for r in rows]


# --- reviews -----------------------------------------------------------------------------

_REVIEW_COLS = """id, payment_id, user_id, wallet_id, stage, score, rules, status, hold_id,
    hold_lots, decided_by, decided_role, decided_at, created_at"""


async def insert_review(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    """False: the payment is under review already (the first review stands)."""
    result = await conn.execute(
        sql("""
        INSERT INTO fraud_reviews (id, payment_id, user_id, wallet_id, stage, score, rules)
        VALUES (:id, :payment_id, :user_id, :wallet_id, :stage, :score, :rules)
        ON CONFLICT (payment_id) DO NOTHING"""),
        row,
    )
    return bool(result.rowcount)


async def review_of_payment(
    conn: AsyncConnection, payment_id: uuid.UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    found = (
        await conn.execute(
            sql(
                f"SELECT {_REVIEW_COLS} FROM fraud_reviews WHERE payment_id = :p"
                + (" FOR UPDATE" if lock else "")
            ),
            {"p": payment_id},
        )
    ).first()
    return None if found is None else dict(found._mapping)


async def get_review(
    conn: AsyncConnection, review_id: uuid.UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    found = (
        await conn.execute(
            sql(
                f"SELECT {_REVIEW_COLS} FROM fraud_reviews WHERE id = :id"
                + (" FOR UPDATE" if lock else "")
            ),
            {"id": review_id},
        )
    ).first()
    return None if found is None else dict(found._mapping)


async def set_hold(
    conn: AsyncConnection, review_id: uuid.UUID, hold_id: uuid.UUID, lots: dict[str, int]
) -> None:
    await conn.execute(
        sql("""
        UPDATE fraud_reviews SET hold_id = :h, hold_lots = CAST(:lots AS jsonb)
         WHERE id = :id AND hold_id IS NULL"""),
        {"id": review_id, "h": hold_id, "lots": json.dumps(lots)},
    )


async def decide(
    conn: AsyncConnection, review_id: uuid.UUID, status: str, by: str, role: str
) -> None:
    await conn.execute(
        sql("""
        UPDATE fraud_reviews
           SET status = :s, decided_by = :by, decided_role = :role, decided_at = now()
         WHERE id = :id AND status = 'pending'"""),
        {"id": review_id, "s": status, "by": by, "role": role},
    )


async def reopen(conn: AsyncConnection, review_id: uuid.UUID) -> None:
    """A `refunded` review whose refund was not made: pending again, with no hold (the
    refund's release freed it; a new one is placed next)."""
    await conn.execute(
        sql("""
        UPDATE fraud_reviews
           SET status = 'pending', decided_by = NULL, decided_role = NULL, decided_at = NULL,
               hold_id = NULL, hold_lots = NULL
         WHERE id = :id AND status = 'refunded'"""),
        {"id": review_id},
    )


async def pending_reviews_of_wallet(
    conn: AsyncConnection, user_id: uuid.UUID, wallet_id: uuid.UUID
) -> list[dict[str, Any]]:
    """A wallet's pending reviews, locked (by its owner: the index the queue reads)."""
    rows = await conn.execute(
        sql(f"""
        SELECT {_REVIEW_COLS} FROM fraud_reviews
         WHERE user_id = :u AND wallet_id = :w AND status = 'pending'
         ORDER BY created_at, id FOR UPDATE"""),
        {"u": user_id, "w": wallet_id},
    )
    return [dict(r._mapping) for r in rows]


async def replace_hold(
    conn: AsyncConnection, review_id: uuid.UUID, hold_id: uuid.UUID, lots: dict[str, int]
) -> None:
    await conn.execute(
        sql("""
        UPDATE fraud_reviews SET hold_id = :h, hold_lots = CAST(:lots AS jsonb)
         WHERE id = :id AND status = 'pending'"""),
        {"id": review_id, "h": hold_id, "lots": json.dumps(lots)},
    )


async def reopen_at_paid(
    conn: AsyncConnection, review_id: uuid.UUID, score: int, rules: list[str]
) -> bool:
    """A review released before anything was held: pending again, at the paid stage."""
    result = await conn.execute(
        sql("""
        UPDATE fraud_reviews
           SET status = 'pending', stage = 'paid', score = :s, rules = :r,
               decided_by = NULL, decided_role = NULL, decided_at = NULL
         WHERE id = :id AND status = 'released' AND hold_id IS NULL"""),
        {"id": review_id, "s": score, "r": rules},
    )
    return bool(result.rowcount)


async def list_reviews(
    conn: AsyncConnection,
    *,
    status: str | None,
    user_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sql(f"""
        SELECT {_REVIEW_COLS} FROM fraud_reviews
         WHERE (CAST(:s AS text) IS NULL OR status = :s)
           AND (CAST(:u AS uuid) IS NULL OR user_id = :u)
           AND (CAST(:at AS timestamptz) IS NULL
                OR (created_at, id) < (CAST(:at AS timestamptz), CAST(:id AS uuid)))
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
        {
            "s": status,
            "u": user_id,
            "at": after[0] if after else None,
            "id": after[1] if after else None,
            "n": limit,
        },
    )
    return [dict(r._mapping) for r in rows]
