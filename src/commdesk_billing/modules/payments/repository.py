"""SQL of the payments domain."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.gateway.models import Payment as GatewayPayment
from commdesk_billing.modules.billing import events as billing_events
from commdesk_billing.modules.payments.model import Pack, Payment

_COLUMNS = ", ".join(Payment.__dataclass_fields__)


async def active_packs(conn: AsyncConnection) -> list[Pack]:
    rows = await conn.execute(
        sql("""
        SELECT code, version, name, price_paise, base_credits, bonus_credits
          FROM credit_packs WHERE active ORDER BY sort_order, code""")
    )
    return [Pack(*r) for r in rows]


async def active_pack(conn: AsyncConnection, code: str) -> Pack | None:
    row = (
        await conn.execute(
            sql("""
            SELECT code, version, name, price_paise, base_credits, bonus_credits
              FROM credit_packs WHERE active AND code = :code"""),
            {"code": code},
        )
    ).first()
    return Pack(*row) if row else None


async def get(
    conn: AsyncConnection, payment_id: uuid.UUID, *, lock: bool = False
) -> Payment | None:
    suffix = " FOR UPDATE" if lock else ""
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM payments WHERE id = :id{suffix}"), {"id": payment_id}
        )
    ).first()
    return Payment.from_row(row) if row else None


async def by_order_id(conn: AsyncConnection, order_id: str) -> Payment | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM payments WHERE order_id = :o"), {"o": order_id}
        )
    ).first()
    return Payment.from_row(row) if row else None


async def by_idempotency_key(conn: AsyncConnection, key: str) -> Payment | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM payments WHERE idempotency_key = :k"), {"k": key}
        )
    ).first()
    return Payment.from_row(row) if row else None


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> Payment | None:
    """Insert a new payment and its `payment.created` fact, in one statement: the row as
    written, or None when its idempotency key exists already (nothing written)."""
    cols = ", ".join(values)
    params = ", ".join(f"CAST(:{c} AS jsonb)" if c == "metadata" else f":{c}" for c in values)
    row = (
        await conn.execute(
            sql(f"""
            WITH ins AS (
                INSERT INTO payments ({cols}) VALUES ({params})
                ON CONFLICT (idempotency_key) DO NOTHING RETURNING *),
            created AS (
                SELECT id, user_id, amount_paise, base_credits + bonus_credits AS credits,
                       jsonb_build_object('kind', kind) AS data
                  FROM ins),
            fact AS ({billing_events.payment_fact_from("created")})
            SELECT {_COLUMNS} FROM ins"""),
            {
                **values,
                "metadata": json.dumps(values.get("metadata") or {}),
                "fact_type": "payment.created",
            },
        )
    ).first()
    return Payment.from_row(row) if row is not None else None


async def count_open_orders(conn: AsyncConnection, user_id: uuid.UUID) -> int:
    return int(
        (
            await conn.execute(
                sql("""
                SELECT count(*) FROM payments
                 WHERE user_id = :u AND status IN ('CREATED', 'ACTIVE', 'FAILED', 'USER_DROPPED')
                   AND order_expires_at > now()
                   -- Checkout orders only: a charge on a mandate is raised by CommDesk (its
                   -- caller bounds those) and a FAILED one is final, not an unpaid order.
                   AND channel = 'order'"""),
                {"u": user_id},
            )
        ).scalar_one()
    )


async def store_create_response(
    conn: AsyncConnection, payment_id: uuid.UUID, body: dict[str, Any]
) -> Any:
    """Keep the first answer; return whichever answer is stored (ours or an earlier one)."""
    row = (
        await conn.execute(
            sql("""
            UPDATE payments SET create_response = coalesce(create_response, CAST(:b AS json))
             WHERE id = :id RETURNING create_response"""),
            {"id": payment_id, "b": json.dumps(body, separators=(",", ":"))},
        )
    ).first()
    return row[0] if row else None


async def lock_for_sync(conn: AsyncConnection, payment_id: uuid.UUID) -> Payment | None:
    """Lock a checkout order's payment and mark it synced, in one statement: the row as it is
    then, or None for a charge on a mandate (left untouched) or no such payment."""
    row = (
        await conn.execute(
            sql(f"""
            UPDATE payments SET last_synced_at = now(), sync_count = sync_count + 1
             WHERE id = :id AND channel <> 'mandate'
            RETURNING {_COLUMNS}"""),
            {"id": payment_id},
        )
    ).first()
    return Payment.from_row(row) if row else None


async def mark_synced(conn: AsyncConnection, payment_id: uuid.UUID) -> None:
    await conn.execute(
        sql("""
        UPDATE payments SET last_synced_at = now(), sync_count = sync_count + 1
         WHERE id = :id"""),
        {"id": payment_id},
    )


async def upsert_attempt(
    conn: AsyncConnection, payment_id: uuid.UUID, attempt: GatewayPayment, raw: dict[str, Any]
) -> None:
    """Record an attempt as Cashfree reports it. A terminal status is never overwritten by a
    non-terminal one (an older read arriving late)."""
    err = attempt.error_details
    await conn.execute(
        sql("""
        INSERT INTO payment_attempts (id, payment_id, cf_payment_id, status, amount_paise,
            currency, payment_method, payment_group, bank_reference, payment_message,
            error_code, error_description, error_reason, attempted_at, completed_at, raw)
        VALUES (:id, :pid, :cf, :st, :amt, :cur, :method, :grp, :bank, :msg, :ec, :ed, :er,
                :at, :done, CAST(:raw AS jsonb))
        ON CONFLICT (cf_payment_id) DO UPDATE SET
            status = EXCLUDED.status, amount_paise = EXCLUDED.amount_paise,
            currency = EXCLUDED.currency, payment_method = EXCLUDED.payment_method,
            payment_group = EXCLUDED.payment_group, attempted_at = EXCLUDED.attempted_at,
            payment_message = EXCLUDED.payment_message, bank_reference = EXCLUDED.bank_reference,
            error_code = EXCLUDED.error_code, error_description = EXCLUDED.error_description,
            error_reason = EXCLUDED.error_reason, completed_at = EXCLUDED.completed_at,
            raw = EXCLUDED.raw, updated_at = now()
        -- A final status is kept against a stale read, except that a late SUCCESS wins.
        WHERE payment_attempts.payment_id = EXCLUDED.payment_id
          AND payment_attempts.status <> 'SUCCESS'
          AND (EXCLUDED.status = 'SUCCESS'
               OR payment_attempts.status NOT IN ('FAILED', 'USER_DROPPED', 'VOID',
                                                  'CANCELLED'))"""),
        {
            "id": uuid.uuid4(),
            "pid": payment_id,
            "cf": attempt.cf_payment_id,
            "st": attempt.payment_status,
            "amt": attempt.payment_amount_paise,
            "cur": attempt.payment_currency,
            "method": attempt.method,
            "grp": attempt.payment_group,
            "bank": attempt.bank_reference,
            "msg": (attempt.payment_message or "")[:500] or None,
            "ec": err.error_code if err else None,
            "ed": (err.error_description or "")[:500] or None if err else None,
            "er": err.error_reason if err else None,
            "at": attempt.payment_time,
            "done": attempt.payment_completion_time,
            "raw": json.dumps(raw, default=str),
        },
    )


async def list_for_user(
    conn: AsyncConnection,
    user_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Payment]:
    params: dict[str, Any] = {"u": user_id, "n": limit}
    where = ""
    if before is not None:
        where = " AND (created_at, id) < (:bt, :bid)"
        params.update(bt=before[0], bid=before[1])
    rows = await conn.execute(
        sql(f"""
        SELECT {_COLUMNS} FROM payments WHERE user_id = :u{where}
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
        params,
    )
    return [Payment.from_row(r) for r in rows]


async def due_for_sync(
    conn: AsyncConnection, *, older_than_s: float, limit: int
) -> list[tuple[uuid.UUID, str, datetime, str | None]]:
    """Payments that may still change at Cashfree and were not asked about lately; claimed by
    stamping last_synced_at (SKIP LOCKED keeps two schedulers from taking the same rows).
    Each with its subscription id when it is a charge on a mandate (else None). A mandate
    charge's FAILED is final (Cashfree's UPI retries are over), so it is not asked again."""
    rows = await conn.execute(
        sql("""
        WITH due AS (
            SELECT id FROM payments
             WHERE updated_at < now() - make_interval(secs => :age)
               AND NOT (channel = 'mandate' AND status = 'FAILED')
               AND ((status IN ('CREATED', 'ACTIVE', 'FAILED', 'USER_DROPPED', 'PAID')
                     AND (last_synced_at IS NULL
                          OR last_synced_at < now() - make_interval(secs => :age)))
                    -- Given up on, but a payment in flight at expiry can still succeed:
                    -- asked again with doubling gaps for a day.
                    OR (status IN ('EXPIRED', 'CANCELLED')
                        AND order_expires_at > now() - interval '1 day'
                        AND (last_synced_at IS NULL
                             OR last_synced_at < now() - make_interval(
                                 secs => :age * power(2, least(sync_count, 10))))))
             ORDER BY updated_at
             LIMIT :n
             FOR UPDATE SKIP LOCKED)
        UPDATE payments p SET last_synced_at = now(), sync_count = sync_count + 1
          FROM due WHERE p.id = due.id
        RETURNING p.id, p.order_id, p.order_expires_at,
                  CASE WHEN p.channel = 'mandate' THEN p.subscription_id END"""),
        {"age": older_than_s, "n": limit},
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def set_pdn_at(conn: AsyncConnection, order_id: str, at: datetime) -> bool:
    """The first pre-debit notice seen for a mandate charge (later ones keep the first)."""
    row = (
        await conn.execute(
            sql("""
            UPDATE payments SET pdn_at = :at
             WHERE order_id = :o AND channel = 'mandate' AND pdn_at IS NULL
            RETURNING id"""),
            {"o": order_id, "at": at},
        )
    ).first()
    return row is not None


async def set_session_if_missing(
    conn: AsyncConnection, payment_id: uuid.UUID, session_id: str | None, cf_order_id: str | None
) -> None:
    await conn.execute(
        sql("""
        UPDATE payments SET payment_session_id = coalesce(payment_session_id, :s),
                            cashfree_order_id = coalesce(cashfree_order_id, :c)
         WHERE id = :id"""),
        {"id": payment_id, "s": session_id, "c": cf_order_id},
    )


async def add_refunded(conn: AsyncConnection, payment_id: uuid.UUID, amount_paise: int) -> None:
    await conn.execute(
        sql("""
        UPDATE payments
           SET refund_amount_paise = coalesce(refund_amount_paise, 0) + :a,
               refunded = coalesce(refund_amount_paise, 0) + :a = amount_paise,
               updated_at = now()
         WHERE id = :id"""),
        {"id": payment_id, "a": amount_paise},
    )


async def raise_fraud_score(conn: AsyncConnection, payment_id: uuid.UUID, score: int) -> None:
    """The payment's `fraud_score` is the highest it was given (before the order, once paid)."""
    await conn.execute(
        sql("""
        UPDATE payments SET fraud_score = greatest(coalesce(fraud_score, 0), :s),
                            updated_at = now()
         WHERE id = :id"""),
        {"id": payment_id, "s": float(score)},
    )


async def search(
    conn: AsyncConnection,
    *,
    order_id: str | None,
    user_id: uuid.UUID | None,
    status: str | None,
    limit: int,
) -> list[Payment]:
    """Newest first, every criterion given ANDed (each has an index: the order id's unique
    one, `payments_user_recent`, `payments_status`)."""
    where: list[str] = []
    params: dict[str, Any] = {"n": limit}
    if order_id is not None:
        where.append("order_id = :o")
        params["o"] = order_id
    if user_id is not None:
        where.append("user_id = :u")
        params["u"] = user_id
    if status is not None:
        where.append("status = :s")
        params["s"] = status
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.execute(
        sql(f"""
        SELECT {_COLUMNS} FROM payments{clause}
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
        params,
    )
    return [Payment.from_row(r) for r in rows]


async def attempts_of(conn: AsyncConnection, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sql("""
        SELECT cf_payment_id, status, amount_paise, payment_group, payment_method,
               bank_reference, payment_message, error_code, error_description,
               attempted_at, completed_at
          FROM payment_attempts WHERE payment_id = :p ORDER BY created_at, id"""),
        {"p": payment_id},
    )
    return [dict(r._mapping) for r in rows]


async def list_filtered(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID | None,
    statuses: list[str] | None,
    method: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Payment]:
    """Newest first by (created_at, id), every filter given ANDed; `created_from` inclusive,
    `created_to` exclusive. One user's: `payments_user_recent`; everyone's:
    `payments_recent` (0035), walked backwards from the cursor."""
    where: list[str] = []
    params: dict[str, Any] = {"n": limit}
    if user_id is not None:
        where.append("user_id = :u")
        params["u"] = user_id
    if statuses:
        where.append("status = ANY(:st)")
        params["st"] = statuses
    if method is not None:
        where.append("payment_method = :m")
        params["m"] = method
    if created_from is not None:
        where.append("created_at >= :cf")
        params["cf"] = created_from
    if created_to is not None:
        where.append("created_at < :ct")
        params["ct"] = created_to
    if before is not None:
        where.append("(created_at, id) < (:bt, :bid)")
        params.update(bt=before[0], bid=before[1])
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.execute(
        sql(f"""
        SELECT {_COLUMNS} FROM payments{clause}
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
        params,
    )
    return [Payment.from_row(r) for r in rows]


# What a webhook receipt needs of the order, and nothing else: the whole row has JSON
# columns to decode.
_ORDER_FACTS = """
    SELECT id, order_id, amount_paise, currency, order_expires_at
      FROM payments WHERE order_id = $1"""


async def order_facts(driver: asyncpg.Connection[Any], order_id: str) -> asyncpg.Record | None:
    return await driver.fetchrow(_ORDER_FACTS, order_id)
