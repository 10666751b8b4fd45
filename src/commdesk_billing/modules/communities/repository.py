"""SQL for the community economy's tables: fee plans, spends, reversals."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.communities.model import Earnings, FeePlan, Spend

_SPEND_COLS = """
    s.id, s.community_id, s.wallet_id, s.user_external_id, s.credits, s.fee_credits,
    s.community_credits, s.basis_paise, s.fee_paise, s.community_paise, s.fee_bps,
    s.fee_plan_version, s.reason, s.reference, s.idempotency_key, s.journal_id,
    s.transaction_id, s.created_by, s.created_at, r.created_at AS reversed_at,
    r.reason AS reversal_reason
"""
_SPENDS = "community_spends s LEFT JOIN community_spend_reversals r ON r.spend_id = s.id"


def _spend(row: Row[Any]) -> Spend:
    return Spend(**row._asdict())


async def current_plan(conn: AsyncConnection, community_id: str) -> FeePlan | None:
    row = (
        await conn.execute(
            sql("""
            SELECT community_id, version, fee_bps, reason, created_by, created_at
              FROM community_fee_plans WHERE community_id = :c
             ORDER BY version DESC LIMIT 1"""),
            {"c": community_id},
        )
    ).first()
    return FeePlan(**row._asdict()) if row else None


async def plan_before(conn: AsyncConnection, community_id: str, version: int) -> FeePlan | None:
    """The version in force before `version` (None: the configured default was)."""
    row = (
        await conn.execute(
            sql("""
            SELECT community_id, version, fee_bps, reason, created_by, created_at
              FROM community_fee_plans WHERE community_id = :c AND version < :v
             ORDER BY version DESC LIMIT 1"""),
            {"c": community_id, "v": version},
        )
    ).first()
    return FeePlan(**row._asdict()) if row else None


async def add_plan(
    conn: AsyncConnection, community_id: str, fee_bps: int, reason: str, created_by: str
) -> FeePlan:
    """The next version. Two changes at once: the second fails on the primary key (and is
    retried by its transaction), so versions never collide or skip."""
    row = (
        await conn.execute(
            sql("""
            INSERT INTO community_fee_plans (community_id, version, fee_bps, reason, created_by)
            SELECT :c, coalesce(max(version), 0) + 1, :bps, :reason, :by
              FROM community_fee_plans WHERE community_id = :c
            RETURNING community_id, version, fee_bps, reason, created_by, created_at"""),
            {"c": community_id, "bps": fee_bps, "reason": reason, "by": created_by},
        )
    ).one()
    return FeePlan(**row._asdict())


_SPEND_FIELDS = (
    "id",
    "community_id",
    "wallet_id",
    "user_external_id",
    "credits",
    "fee_credits",
    "community_credits",
    "basis_paise",
    "fee_paise",
    "community_paise",
    "fee_bps",
    "fee_plan_version",
    "reason",
    "reference",
    "idempotency_key",
    "journal_id",
    "transaction_id",
    "created_by",
    "created_at",
)


def insert_spend_sql(spend: Spend) -> tuple[str, dict[str, Any]]:
    """The spend's row as one data-modifying part of the wallet's own statement (its
    `also`): no round trip of its own on the hot path. Parameters are prefixed `cs_`."""
    columns = ", ".join(_SPEND_FIELDS)
    values = ", ".join(f":cs_{f}" for f in _SPEND_FIELDS)
    return (
        f"INSERT INTO community_spends ({columns}) VALUES ({values}) RETURNING id",
        {f"cs_{f}": getattr(spend, f) for f in _SPEND_FIELDS},
    )


async def get_spend(conn: AsyncConnection, spend_id: uuid.UUID) -> Spend | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_SPEND_COLS} FROM {_SPENDS} WHERE s.id = :id"), {"id": spend_id}
        )
    ).first()
    return _spend(row) if row else None


async def lock_spend(conn: AsyncConnection, spend_id: uuid.UUID) -> Spend | None:
    """The spend, its row locked (FOR UPDATE of the spend only): one reversal at a time."""
    row = (
        await conn.execute(
            sql(f"SELECT {_SPEND_COLS} FROM {_SPENDS} WHERE s.id = :id FOR UPDATE OF s"),
            {"id": spend_id},
        )
    ).first()
    return _spend(row) if row else None


async def spend_by_key(conn: AsyncConnection, key: str) -> Spend | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_SPEND_COLS} FROM {_SPENDS} WHERE s.idempotency_key = :k"), {"k": key}
        )
    ).first()
    return _spend(row) if row else None


async def insert_reversal(
    conn: AsyncConnection,
    *,
    spend_id: uuid.UUID,
    journal_id: uuid.UUID,
    transaction_id: uuid.UUID,
    lot_id: uuid.UUID,
    reason: str,
    created_by: str,
    at: datetime,
) -> bool:
    """False when the spend was already reversed (its primary key: once, ever)."""
    result = await conn.execute(
        sql("""
        INSERT INTO community_spend_reversals (spend_id, journal_id, transaction_id, lot_id,
                                               reason, created_by, created_at)
        VALUES (:s, :j, :t, :l, :reason, :by, :at)
        ON CONFLICT (spend_id) DO NOTHING"""),
        {
            "s": spend_id,
            "j": journal_id,
            "t": transaction_id,
            "l": lot_id,
            "reason": reason,
            "by": created_by,
            "at": at,
        },
    )
    return bool(result.rowcount)


async def list_spends(
    conn: AsyncConnection,
    community_id: str,
    *,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Spend]:
    rows = (
        await conn.execute(
            sql(f"""
            SELECT {_SPEND_COLS} FROM {_SPENDS}
             WHERE s.community_id = :c
               AND (CAST(:at AS timestamptz) IS NULL
                    OR (s.created_at, s.id) < (CAST(:at AS timestamptz), CAST(:id AS uuid)))
             ORDER BY s.created_at DESC, s.id DESC LIMIT :n"""),
            {
                "c": community_id,
                "at": before[0] if before else None,
                "id": before[1] if before else None,
                "n": limit,
            },
        )
    ).all()
    return [_spend(r) for r in rows]


async def earnings(conn: AsyncConnection, community_id: str) -> Earnings:
    """From the spends and reversals themselves, one statement (the ledger's accounts are
    checked against these by `ledger verify`)."""
    row = (
        await conn.execute(
            sql("""
            SELECT count(*) AS spends, count(r.spend_id) AS reversals,
                   coalesce(sum(s.community_credits) FILTER (WHERE r.spend_id IS NULL), 0)
                       AS earned_credits,
                   coalesce(sum(s.fee_credits) FILTER (WHERE r.spend_id IS NULL), 0)
                       AS fee_credits,
                   coalesce(sum(s.community_paise) FILTER (WHERE r.spend_id IS NULL), 0)
                       AS payable_paise,
                   coalesce(sum(s.basis_paise) FILTER (WHERE r.spend_id IS NULL), 0)
                       AS basis_paise,
                   coalesce(sum(s.fee_paise) FILTER (WHERE r.spend_id IS NULL), 0) AS fee_paise
              FROM community_spends s
              LEFT JOIN community_spend_reversals r ON r.spend_id = s.id
             WHERE s.community_id = :c"""),
            {"c": community_id},
        )
    ).one()
    return Earnings(
        community_id=community_id,
        earned_credits=int(row.earned_credits),
        fee_credits=int(row.fee_credits),
        payable_paise=int(row.payable_paise),
        basis_paise=int(row.basis_paise),
        fee_paise=int(row.fee_paise),
        spends=int(row.spends),
        reversals=int(row.reversals),
    )
