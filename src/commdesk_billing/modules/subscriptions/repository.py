"""SQL for the subscriptions' tables: plans, subscriptions, periods and charges (an INR
period's charges on the mandate: `attempt_repository.py`; plan changes: `change_repository.py`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.errors import SubscriptionExists
from commdesk_billing.modules.subscriptions.model import (
    Charge,
    Currency,
    IntervalUnit,
    Period,
    PeriodStatus,
    Plan,
    Status,
    Subscription,
)

_PLAN_COLS = (
    "code, version, name, currency, price_credits, price_paise, interval_unit, interval_count, "
    "grace_period_s, dunning_offsets_s, active, created_by, created_at"
)
_SUB_COLS = (
    "id, user_id, user_ref, wallet_id, plan_code, plan_version, status, anchor_at, "
    "current_period, current_period_start, current_period_end, cancel_at_period_end, "
    "next_plan_code, next_plan_version, ended_at, ended_reason, created_at, updated_at, "
    "mandate_id"
)
_PERIOD_COLS = (
    "subscription_id, number, period_start, period_end, plan_code, plan_version, "
    "price_credits, status, attempts, next_retry_at, grace_until, paid_at, price_paise"
)
_CHARGE_COLS = (
    "id, subscription_id, period_number, kind, credits, operation_key, hold_id, from_plan, "
    "to_plan, created_at"
)


def _plan(row: Row[Any]) -> Plan:
    f = row._asdict()
    return Plan(
        **{
            **f,
            "currency": Currency(f["currency"]),
            "interval_unit": IntervalUnit(f["interval_unit"]),
            "dunning_offsets_s": [int(x) for x in f["dunning_offsets_s"]],
        }
    )


def _sub(row: Row[Any]) -> Subscription:
    f = row._asdict()
    return Subscription(**{**f, "status": Status(f["status"])})


def _period(row: Row[Any]) -> Period:
    f = row._asdict()
    return Period(**{**f, "status": PeriodStatus(f["status"])})


async def add_plan_version(
    conn: AsyncConnection,
    *,
    code: str,
    name: str,
    currency: Currency,
    price_credits: int | None,
    price_paise: int | None,
    interval_unit: IntervalUnit,
    interval_count: int,
    grace_period_s: int,
    dunning_offsets_s: list[int],
    active: bool,
    created_by: str,
) -> Plan:
    # Serializes versions of one code: two finance admins changing it at once get versions
    # n and n + 1, never a primary-key error.
    await conn.execute(
        sql("SELECT pg_advisory_xact_lock(hashtextextended('subscription_plan:' || :c, 0))"),
        {"c": code},
    )
    row = (
        await conn.execute(
            sql(f"""
        INSERT INTO subscription_plans (code, version, name, currency, price_credits,
                                        price_paise, interval_unit, interval_count,
                                        grace_period_s, dunning_offsets_s, active, created_by)
        SELECT :code, coalesce(max(version), 0) + 1, :name, :cur, :pc, :pp, :unit, :count,
               :grace, CAST(:offsets AS bigint[]), :active, :by
          FROM subscription_plans WHERE code = :code
        RETURNING {_PLAN_COLS}"""),
            {
                "code": code,
                "name": name,
                "cur": currency.value,
                "pc": price_credits,
                "pp": price_paise,
                "unit": interval_unit.value,
                "count": interval_count,
                "grace": grace_period_s,
                "offsets": dunning_offsets_s,
                "active": active,
                "by": created_by,
            },
        )
    ).one()
    return _plan(row)


async def latest_plan(conn: AsyncConnection, code: str) -> Plan | None:
    row = (
        await conn.execute(
            sql(f"""SELECT {_PLAN_COLS} FROM subscription_plans WHERE code = :c
                    ORDER BY version DESC LIMIT 1"""),
            {"c": code},
        )
    ).first()
    return _plan(row) if row else None


async def get_plan(conn: AsyncConnection, code: str, version: int) -> Plan | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_PLAN_COLS} FROM subscription_plans WHERE code = :c AND version = :v"),
            {"c": code, "v": version},
        )
    ).first()
    return _plan(row) if row else None


async def latest_plans(conn: AsyncConnection) -> list[Plan]:
    rows = (
        await conn.execute(
            sql(f"""SELECT DISTINCT ON (code) {_PLAN_COLS} FROM subscription_plans
                    ORDER BY code, version DESC""")
        )
    ).all()
    return [_plan(r) for r in rows]


async def insert_subscription(conn: AsyncConnection, s: Subscription) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                sql("""
            INSERT INTO subscriptions (id, user_id, user_ref, wallet_id, plan_code,
                                       plan_version, status, anchor_at, current_period,
                                       current_period_start, current_period_end, mandate_id)
            VALUES (:id, :u, :ref, :w, :pc, :pv, :st, :anchor, :n, :ps, :pe, :m)"""),
                {
                    "id": s.id,
                    "u": s.user_id,
                    "ref": s.user_ref,
                    "w": s.wallet_id,
                    "pc": s.plan_code,
                    "pv": s.plan_version,
                    "st": s.status.value,
                    "anchor": s.anchor_at,
                    "n": s.current_period,
                    "ps": s.current_period_start,
                    "pe": s.current_period_end,
                    "m": s.mandate_id,
                },
            )
    except IntegrityError as exc:
        if "subscriptions_one_live_per_plan" in str(exc.orig):
            raise SubscriptionExists(
                "the member already has a live subscription to this plan"
            ) from exc
        raise


async def get_subscription(
    conn: AsyncConnection, subscription_id: uuid.UUID, *, lock: bool = False
) -> Subscription | None:
    row = (
        await conn.execute(
            sql(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE id = :id"
                + (" FOR UPDATE" if lock else "")
            ),
            {"id": subscription_id},
        )
    ).first()
    return _sub(row) if row else None


async def list_of_user(
    conn: AsyncConnection,
    user_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Subscription]:
    rows = (
        await conn.execute(
            sql(f"""SELECT {_SUB_COLS} FROM subscriptions WHERE user_id = :u
                      AND (CAST(:at AS timestamptz) IS NULL
                           OR (created_at, id) < (CAST(:at AS timestamptz), CAST(:id AS uuid)))
                    ORDER BY created_at DESC, id DESC LIMIT :n"""),
            {
                "u": user_id,
                "n": limit,
                "at": before[0] if before else None,
                "id": before[1] if before else None,
            },
        )
    ).all()
    return [_sub(r) for r in rows]


async def holds_live(conn: AsyncConnection, user_id: uuid.UUID, plan_code: str) -> bool:
    """Whether the member has a live subscription to `plan_code`."""
    row = (
        await conn.execute(
            sql("""SELECT 1 FROM subscriptions WHERE user_id = :u AND plan_code = :c
                      AND status IN ('pending', 'active', 'past_due')"""),
            {"u": user_id, "c": plan_code},
        )
    ).first()
    return row is not None


async def due_subscriptions(
    conn: AsyncConnection,
    at: datetime,
    limit: int,
    *,
    exclude: list[uuid.UUID],
    only: list[uuid.UUID] | None = None,
    inr_lead_s: int = 0,
) -> list[uuid.UUID]:
    """Live subscriptions whose paid period has ended by `at` (a past-due one stays here
    until it is paid or ends) — an INR one's `inr_lead_s` earlier (its charge is raised
    ahead), and one pending its first payment or an upgrade's charge always — but those in
    `exclude` (already seen by this run); among `only` when it is given."""
    rows = (
        await conn.execute(
            sql("""SELECT id FROM subscriptions
                    WHERE status IN ('pending', 'active', 'past_due')
                      AND (status = 'pending'
                           -- an upgrade waiting for its prorated charge (inr_change.py)
                           OR EXISTS (SELECT 1 FROM subscription_plan_changes c
                                       WHERE c.subscription_id = subscriptions.id
                                         AND c.status IN ('raising', 'raised'))
                           OR current_period_end <= CAST(:at AS timestamptz)
                              + CASE WHEN mandate_id IS NULL THEN interval '0 s'
                                     ELSE CAST(:lead AS integer) * interval '1 second' END)
                      AND NOT (id = ANY(CAST(:seen AS uuid[])))
                      AND (CAST(:only AS uuid[]) IS NULL OR id = ANY(CAST(:only AS uuid[])))
                    ORDER BY current_period_end, id LIMIT :n"""),
            {"at": at, "n": limit, "seen": exclude, "only": only, "lead": inr_lead_s},
        )
    ).all()
    return [r.id for r in rows]


async def update_subscription(
    conn: AsyncConnection, subscription_id: uuid.UUID, **fields: Any
) -> Subscription:
    assignments = ", ".join(f"{name} = :{name}" for name in sorted(fields))
    values = {k: (v.value if isinstance(v, Status) else v) for k, v in fields.items()}
    try:
        async with conn.begin_nested():
            row = (
                await conn.execute(
                    sql(f"""UPDATE subscriptions SET {assignments}, updated_at = now()
                            WHERE id = :_id RETURNING {_SUB_COLS}"""),
                    {**values, "_id": subscription_id},
                )
            ).one()
    except IntegrityError as exc:
        if "subscriptions_one_live_per_plan" in str(exc.orig):
            raise SubscriptionExists(
                "the member already has a live subscription to that plan"
            ) from exc
        raise
    return _sub(row)


async def insert_period(conn: AsyncConnection, p: Period) -> None:
    """Makes the period once: a second maker (a racing job, a re-run after a crash) writes
    nothing (the primary key and the unique start)."""
    await conn.execute(
        sql("""
        INSERT INTO subscription_periods (subscription_id, number, period_start, period_end,
                                          plan_code, plan_version, price_credits, status,
                                          attempts, next_retry_at, grace_until, paid_at,
                                          price_paise)
        VALUES (:s, :n, :ps, :pe, :pc, :pv, :price, :st, :att, :retry, :grace, :paid,
                :paise)
        ON CONFLICT DO NOTHING"""),
        {
            "s": p.subscription_id,
            "n": p.number,
            "ps": p.period_start,
            "pe": p.period_end,
            "pc": p.plan_code,
            "pv": p.plan_version,
            "price": p.price_credits,
            "st": p.status.value,
            "att": p.attempts,
            "retry": p.next_retry_at,
            "grace": p.grace_until,
            "paid": p.paid_at,
            "paise": p.price_paise,
        },
    )


async def get_period(conn: AsyncConnection, subscription_id: uuid.UUID, n: int) -> Period | None:
    row = (
        await conn.execute(
            sql(f"""SELECT {_PERIOD_COLS} FROM subscription_periods
                    WHERE subscription_id = :s AND number = :n"""),
            {"s": subscription_id, "n": n},
        )
    ).first()
    return _period(row) if row else None


async def periods_of(conn: AsyncConnection, subscription_id: uuid.UUID) -> list[Period]:
    rows = (
        await conn.execute(
            sql(f"""SELECT {_PERIOD_COLS} FROM subscription_periods
                    WHERE subscription_id = :s ORDER BY number"""),
            {"s": subscription_id},
        )
    ).all()
    return [_period(r) for r in rows]


async def update_period(
    conn: AsyncConnection,
    subscription_id: uuid.UUID,
    n: int,
    *,
    status: PeriodStatus,
    attempts: int,
    next_retry_at: datetime | None,
    paid_at: datetime | None,
) -> None:
    await conn.execute(
        sql("""UPDATE subscription_periods
                  SET status = :st, attempts = :att, next_retry_at = :retry, paid_at = :paid,
                      updated_at = now()
                WHERE subscription_id = :s AND number = :n"""),
        {
            "st": status.value,
            "att": attempts,
            "retry": next_retry_at,
            "paid": paid_at,
            "s": subscription_id,
            "n": n,
        },
    )


async def insert_charge(conn: AsyncConnection, c: Charge) -> None:
    await conn.execute(
        sql("""
        INSERT INTO subscription_charges (id, subscription_id, period_number, kind, credits,
                                          operation_key, hold_id, from_plan, to_plan)
        VALUES (:id, :s, :n, :k, :c, :key, :h, :f, :t)"""),
        {
            "id": c.id,
            "s": c.subscription_id,
            "n": c.period_number,
            "k": c.kind,
            "c": c.credits,
            "key": c.operation_key,
            "h": c.hold_id,
            "f": c.from_plan,
            "t": c.to_plan,
        },
    )


async def find_charge(conn: AsyncConnection, operation_key: str) -> Charge | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_CHARGE_COLS} FROM subscription_charges WHERE operation_key = :k"),
            {"k": operation_key},
        )
    ).first()
    return Charge(**row._asdict()) if row else None


async def set_period_bounds(
    conn: AsyncConnection, subscription_id: uuid.UUID, n: int, start: datetime, end: datetime
) -> None:
    """A first INR period starts when it is paid (nothing was served before)."""
    await conn.execute(
        sql("""UPDATE subscription_periods SET period_start = :ps, period_end = :pe,
                      updated_at = now()
                WHERE subscription_id = :s AND number = :n"""),
        {"ps": start, "pe": end, "s": subscription_id, "n": n},
    )
