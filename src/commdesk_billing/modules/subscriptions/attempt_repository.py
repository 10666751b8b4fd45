"""The SQL of an INR period's charges raised on the mandate (`subscription_mandate_charges`,
one row an attempt), private to the module."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.subscriptions.model import AttemptStatus, MandateAttempt

_ATTEMPT_COLS = (
    "subscription_id, period_number, attempt, operation_key, mandate_id, price_paise, "
    "payment_id, status, failure, created_at, updated_at"
)


def _attempt(row: Row[Any]) -> MandateAttempt:
    f = row._asdict()
    return MandateAttempt(**{**f, "status": AttemptStatus(f["status"])})


async def insert_attempt(
    conn: AsyncConnection,
    *,
    subscription_id: uuid.UUID,
    period_number: int,
    attempt: int,
    operation_key: str,
    mandate_id: uuid.UUID,
    price_paise: int,
) -> MandateAttempt:
    """Writes the attempt once (the primary key, the unique key, at most one open per
    period); a second writer finds the first's row."""
    await conn.execute(
        sql("""
        INSERT INTO subscription_mandate_charges (subscription_id, period_number, attempt,
                                                  operation_key, mandate_id, price_paise,
                                                  status)
        VALUES (:s, :n, :a, :k, :m, :p, 'raising')
        ON CONFLICT DO NOTHING"""),
        {
            "s": subscription_id,
            "n": period_number,
            "a": attempt,
            "k": operation_key,
            "m": mandate_id,
            "p": price_paise,
        },
    )
    found = await get_attempt(conn, subscription_id, period_number, attempt)
    assert found is not None
    return found


async def get_attempt(
    conn: AsyncConnection, subscription_id: uuid.UUID, n: int, attempt: int
) -> MandateAttempt | None:
    row = (
        await conn.execute(
            sql(f"""SELECT {_ATTEMPT_COLS} FROM subscription_mandate_charges
                    WHERE subscription_id = :s AND period_number = :n AND attempt = :a"""),
            {"s": subscription_id, "n": n, "a": attempt},
        )
    ).first()
    return _attempt(row) if row else None


async def open_attempt(
    conn: AsyncConnection, subscription_id: uuid.UUID, n: int
) -> MandateAttempt | None:
    """The period's charge in flight (raising or raised), if any: at most one (an index)."""
    row = (
        await conn.execute(
            sql(f"""SELECT {_ATTEMPT_COLS} FROM subscription_mandate_charges
                    WHERE subscription_id = :s AND period_number = :n
                      AND status IN ('raising', 'raised')"""),
            {"s": subscription_id, "n": n},
        )
    ).first()
    return _attempt(row) if row else None


async def attempt_by_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> MandateAttempt | None:
    row = (
        await conn.execute(
            sql(f"""SELECT {_ATTEMPT_COLS} FROM subscription_mandate_charges
                    WHERE payment_id = :p"""),
            {"p": payment_id},
        )
    ).first()
    return _attempt(row) if row else None


async def attempts_of(conn: AsyncConnection, subscription_id: uuid.UUID) -> list[MandateAttempt]:
    rows = (
        await conn.execute(
            sql(f"""SELECT {_ATTEMPT_COLS} FROM subscription_mandate_charges
                    WHERE subscription_id = :s ORDER BY period_number, attempt"""),
            {"s": subscription_id},
        )
    ).all()
    return [_attempt(r) for r in rows]


async def set_attempt(
    conn: AsyncConnection,
    a: MandateAttempt,
    *,
    to: AttemptStatus,
    sources: tuple[AttemptStatus, ...],
    payment_id: uuid.UUID | None = None,
    failure: str | None = None,
) -> bool:
    """Moves the attempt to `to` if it is in one of `sources`: True when it moved (a
    repeat, a race or a late answer finds it elsewhere and changes nothing)."""
    row = (
        await conn.execute(
            sql("""UPDATE subscription_mandate_charges
                      SET status = :to, payment_id = coalesce(:p, payment_id),
                          failure = coalesce(:f, failure), updated_at = now()
                    WHERE subscription_id = :s AND period_number = :n AND attempt = :a
                      AND status = ANY(:src)
                RETURNING 1"""),
            {
                "to": to.value,
                "p": payment_id,
                "f": failure[:300] if failure else None,
                "s": a.subscription_id,
                "n": a.period_number,
                "a": a.attempt,
                "src": [x.value for x in sources],
            },
        )
    ).first()
    return row is not None
