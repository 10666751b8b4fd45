"""The SQL of INR plan changes (`subscription_plan_changes`), private to the module."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.subscriptions.model import ChangeStatus, PlanChange

_COLS = (
    "id, subscription_id, operation_key, period_number, from_plan_code, from_plan_version, "
    "to_plan_code, to_plan_version, mandate_id, price_paise, payment_id, status, failure, "
    "requested_at, created_at, updated_at"
)


def _change(row: Row[Any]) -> PlanChange:
    f = row._asdict()
    return PlanChange(**{**f, "status": ChangeStatus(f["status"])})


async def insert(
    conn: AsyncConnection,
    *,
    change_id: uuid.UUID,
    subscription_id: uuid.UUID,
    operation_key: str,
    period_number: int,
    from_plan: tuple[str, int],
    to_plan: tuple[str, int],
    mandate_id: uuid.UUID,
    price_paise: int,
    at: datetime,
) -> PlanChange | None:
    """Writes the change once (its key); None when another change of the subscription is
    open (the partial unique index: the caller refuses)."""
    await conn.execute(
        sql("""
        INSERT INTO subscription_plan_changes
               (id, subscription_id, operation_key, period_number, from_plan_code,
                from_plan_version, to_plan_code, to_plan_version, mandate_id, price_paise,
                status, requested_at)
        VALUES (:id, :s, :k, :n, :fc, :fv, :tc, :tv, :m, :p, 'raising', :at)
        ON CONFLICT DO NOTHING"""),
        {
            "id": change_id,
            "s": subscription_id,
            "k": operation_key,
            "n": period_number,
            "fc": from_plan[0],
            "fv": from_plan[1],
            "tc": to_plan[0],
            "tv": to_plan[1],
            "m": mandate_id,
            "p": price_paise,
            "at": at,
        },
    )
    return await by_key(conn, operation_key)


async def by_key(conn: AsyncConnection, operation_key: str) -> PlanChange | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLS} FROM subscription_plan_changes WHERE operation_key = :k"),
            {"k": operation_key},
        )
    ).first()
    return _change(row) if row else None


async def open_change(conn: AsyncConnection, subscription_id: uuid.UUID) -> PlanChange | None:
    """The subscription's change waiting for its payment (raising or raised): at most one."""
    row = (
        await conn.execute(
            sql(f"""SELECT {_COLS} FROM subscription_plan_changes
                    WHERE subscription_id = :s AND status IN ('raising', 'raised')"""),
            {"s": subscription_id},
        )
    ).first()
    return _change(row) if row else None


async def by_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> PlanChange | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLS} FROM subscription_plan_changes WHERE payment_id = :p"),
            {"p": payment_id},
        )
    ).first()
    return _change(row) if row else None


async def of_subscription(conn: AsyncConnection, subscription_id: uuid.UUID) -> list[PlanChange]:
    rows = (
        await conn.execute(
            sql(f"""SELECT {_COLS} FROM subscription_plan_changes
                    WHERE subscription_id = :s ORDER BY requested_at, id"""),
            {"s": subscription_id},
        )
    ).all()
    return [_change(r) for r in rows]


async def move(
    conn: AsyncConnection,
    change: PlanChange,
    *,
    to: ChangeStatus,
    sources: tuple[ChangeStatus, ...],
    payment_id: uuid.UUID | None = None,
    failure: str | None = None,
) -> bool:
    """Moves the change to `to` if it is in one of `sources`: True when it moved."""
    row = (
        await conn.execute(
            sql("""UPDATE subscription_plan_changes
                      SET status = :to, payment_id = coalesce(:p, payment_id),
                          failure = coalesce(:f, failure), updated_at = now()
                    WHERE id = :id AND status = ANY(:src)
                RETURNING 1"""),
            {
                "to": to.value,
                "p": payment_id,
                "f": failure[:300] if failure else None,
                "id": change.id,
                "src": [x.value for x in sources],
            },
        )
    ).first()
    return row is not None
