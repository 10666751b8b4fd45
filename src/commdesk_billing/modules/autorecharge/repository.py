"""SQL of auto-recharge: settings, recharges and the decision log (this module's tables)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.autorecharge.model import (
    Decision,
    Recharge,
    RechargeSettings,
    RechargeStatus,
    Usage,
)
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry.metrics import AUTO_RECHARGE_EVENTS

_SETTINGS_COLS = """
    wallet_id, enabled, threshold, pack_code, amount_paise, customer_phone, customer_email,
    max_recharges_per_day, max_recharges_per_month, max_paise_per_day, max_paise_per_month,
    max_consecutive_failures, mandate_id, consecutive_failures, backoff_until,
    burn_credits_per_hour, predicted_level, predicted_at, created_at, updated_at
"""
_RECHARGE_COLS = """
    id, wallet_id, status, trigger_level, available_credits, payment_id, amount_paise, credits,
    order_request, reason, created_at, opened_at, settled_at
"""


def _settings(row: Row[Any]) -> RechargeSettings:
    return RechargeSettings(**row._asdict())


def _recharge(row: Row[Any]) -> Recharge:
    data = row._asdict()
    data["status"] = RechargeStatus(data["status"])
    if isinstance(data["order_request"], str):
        data["order_request"] = json.loads(data["order_request"])
    return Recharge(**data)


async def get_settings(
    conn: AsyncConnection, wallet_id: uuid.UUID, *, lock: bool = False
) -> RechargeSettings | None:
    suffix = " FOR UPDATE" if lock else ""
    row = (
        await conn.execute(
            sql(
                f"SELECT {_SETTINGS_COLS} FROM auto_recharge_settings WHERE wallet_id = :w{suffix}"
            ),
            {"w": wallet_id},
        )
    ).first()
    return _settings(row) if row else None


async def upsert_settings(conn: AsyncConnection, values: dict[str, Any]) -> RechargeSettings:
    """The member's part of the settings; a change from off to on starts the failure count
    again (the member has seen the failures and turned it back on)."""
    row = (
        await conn.execute(
            sql(f"""
        INSERT INTO auto_recharge_settings AS s (
            wallet_id, enabled, threshold, pack_code, amount_paise, customer_phone,
            customer_email, max_recharges_per_day, max_recharges_per_month, max_paise_per_day,
            max_paise_per_month, max_consecutive_failures, predicted_level, mandate_id)
        VALUES (:wallet_id, :enabled, :threshold, :pack_code, :amount_paise, :customer_phone,
                :customer_email, :max_recharges_per_day, :max_recharges_per_month,
                :max_paise_per_day, :max_paise_per_month, :max_consecutive_failures,
                :threshold, :mandate_id)
        ON CONFLICT (wallet_id) DO UPDATE SET
            enabled = EXCLUDED.enabled, threshold = EXCLUDED.threshold,
            pack_code = EXCLUDED.pack_code, amount_paise = EXCLUDED.amount_paise,
            customer_phone = EXCLUDED.customer_phone, customer_email = EXCLUDED.customer_email,
            max_recharges_per_day = EXCLUDED.max_recharges_per_day,
            max_recharges_per_month = EXCLUDED.max_recharges_per_month,
            max_paise_per_day = EXCLUDED.max_paise_per_day,
            max_paise_per_month = EXCLUDED.max_paise_per_month,
            max_consecutive_failures = EXCLUDED.max_consecutive_failures,
            mandate_id = EXCLUDED.mandate_id,
            consecutive_failures = CASE WHEN EXCLUDED.enabled AND NOT s.enabled THEN 0
                                        ELSE s.consecutive_failures END,
            backoff_until = CASE WHEN EXCLUDED.enabled AND NOT s.enabled THEN NULL
                                 ELSE s.backoff_until END,
            updated_at = now()
        RETURNING {_SETTINGS_COLS}"""),
            values,
        )
    ).one()
    return _settings(row)


async def set_prediction(
    conn: AsyncConnection, wallet_id: uuid.UUID, burn_per_hour: int, level: int, at: datetime
) -> None:
    await conn.execute(
        sql("""
        UPDATE auto_recharge_settings SET burn_credits_per_hour = :burn,
               predicted_level = :level, predicted_at = :at
         WHERE wallet_id = :w"""),
        {"w": wallet_id, "burn": burn_per_hour, "level": level, "at": at},
    )


async def enabled_settings(conn: AsyncConnection, *, limit: int) -> list[RechargeSettings]:
    rows = (
        await conn.execute(
            sql(f"""
        SELECT {_SETTINGS_COLS} FROM auto_recharge_settings WHERE enabled
         ORDER BY predicted_at NULLS FIRST, wallet_id LIMIT :limit"""),
            {"limit": limit},
        )
    ).all()
    return [_settings(r) for r in rows]


async def record_failure(
    conn: AsyncConnection, wallet_id: uuid.UUID, backoff_until: datetime | None
) -> int:
    """One more consecutive failure; the count after it."""
    row = (
        await conn.execute(
            sql("""
        UPDATE auto_recharge_settings SET consecutive_failures = consecutive_failures + 1,
               backoff_until = :until, updated_at = now()
         WHERE wallet_id = :w
        RETURNING consecutive_failures"""),
            {"w": wallet_id, "until": backoff_until},
        )
    ).first()
    return int(row[0]) if row else 0


async def record_success(conn: AsyncConnection, wallet_id: uuid.UUID) -> None:
    await conn.execute(
        sql("""
        UPDATE auto_recharge_settings SET consecutive_failures = 0, backoff_until = NULL,
               updated_at = now()
         WHERE wallet_id = :w"""),
        {"w": wallet_id},
    )


async def disable(conn: AsyncConnection, wallet_id: uuid.UUID) -> None:
    await conn.execute(
        sql("""
        UPDATE auto_recharge_settings SET enabled = false, updated_at = now()
         WHERE wallet_id = :w"""),
        {"w": wallet_id},
    )


# --- recharges ----------------------------------------------------------------------------


async def insert_request(
    conn: AsyncConnection,
    recharge_id: uuid.UUID,
    wallet_id: uuid.UUID,
    *,
    trigger_level: int,
    available_credits: int,
) -> bool:
    """A new request, unless one is in flight for the wallet (then False, nothing written)."""
    result = await conn.execute(
        sql("""
        INSERT INTO auto_recharges (id, wallet_id, status, trigger_level, available_credits)
        VALUES (:id, :w, 'requested', :level, :available)
        ON CONFLICT (wallet_id) WHERE status IN ('requested', 'opening', 'pending', 'notified')
        DO NOTHING"""),
        {"id": recharge_id, "w": wallet_id, "level": trigger_level, "available": available_credits},
    )
    return bool(result.rowcount == 1)


async def get_recharge(
    conn: AsyncConnection, recharge_id: uuid.UUID, *, lock: bool = False
) -> Recharge | None:
    suffix = " FOR UPDATE" if lock else ""
    row = (
        await conn.execute(
            sql(f"SELECT {_RECHARGE_COLS} FROM auto_recharges WHERE id = :id{suffix}"),
            {"id": recharge_id},
        )
    ).first()
    return _recharge(row) if row else None


async def by_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> Recharge | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_RECHARGE_COLS} FROM auto_recharges WHERE payment_id = :p"),
            {"p": payment_id},
        )
    ).first()
    return _recharge(row) if row else None


async def move(
    conn: AsyncConnection,
    recharge_id: uuid.UUID,
    to: RechargeStatus,
    *,
    allowed: frozenset[RechargeStatus],
    **columns: Any,
) -> RechargeStatus | None:
    """Move the recharge if it is in one of `allowed`; the status it left, or None."""
    sets = "".join(f", {c} = :{c}" for c in sorted(columns))
    row = (
        await conn.execute(
            sql(f"""
        WITH old AS (SELECT status FROM auto_recharges WHERE id = :id FOR UPDATE)
        UPDATE auto_recharges r SET status = :to, updated_at = now(){sets}
          FROM old
         WHERE r.id = :id AND old.status = ANY(:allowed)
        RETURNING old.status"""),
            {"id": recharge_id, "to": to.value, "allowed": [s.value for s in allowed], **columns},
        )
    ).first()
    return RechargeStatus(row[0]) if row else None


async def set_order_request(conn: AsyncConnection, recharge_id: uuid.UUID, order: str) -> None:
    """The order a recharge opens instead of its mandate's charge (it fell back)."""
    await conn.execute(
        sql("""
        UPDATE auto_recharges SET order_request = CAST(:o AS jsonb), updated_at = now()
         WHERE id = :id"""),
        {"id": recharge_id, "o": order},
    )


async def usage(
    conn: AsyncConnection,
    wallet_id: uuid.UUID,
    *,
    day_start: datetime,
    month_start: datetime,
    window_start: datetime,
) -> Usage:
    """Recharges that opened an order (whatever became of them) and the last success."""
    row = (
        await conn.execute(
            sql("""
        SELECT count(*) FILTER (WHERE opened_at >= :day) AS today_count,
               coalesce(sum(amount_paise) FILTER (WHERE opened_at >= :day), 0) AS today_paise,
               count(*) FILTER (WHERE opened_at >= :month) AS month_count,
               coalesce(sum(amount_paise) FILTER (WHERE opened_at >= :month), 0) AS month_paise,
               count(*) FILTER (WHERE opened_at >= :window) AS window_count,
               max(settled_at) FILTER (WHERE status = 'succeeded') AS last_success_at
          FROM auto_recharges
         WHERE wallet_id = :w AND opened_at IS NOT NULL"""),
            {"w": wallet_id, "day": day_start, "month": month_start, "window": window_start},
        )
    ).one()
    return Usage(
        today_count=int(row.today_count),
        today_paise=int(row.today_paise),
        month_count=int(row.month_count),
        month_paise=int(row.month_paise),
        window_count=int(row.window_count),
        last_success_at=row.last_success_at,
    )


async def pending(
    conn: AsyncConnection, *, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[Recharge]:
    """A page of pending recharges in (opened_at, id) order, after `after` (keyset)."""
    at, rid = after if after is not None else (None, None)
    rows = (
        await conn.execute(
            sql(f"""
        SELECT {_RECHARGE_COLS} FROM auto_recharges WHERE status IN ('pending', 'notified')
           AND (CAST(:at AS timestamptz) IS NULL OR (opened_at, id) > (:at, :rid))
         ORDER BY opened_at, id LIMIT :limit"""),
            {"limit": limit, "at": at, "rid": rid},
        )
    ).all()
    return [_recharge(r) for r in rows]


async def retry_candidates(conn: AsyncConnection, now: datetime, *, limit: int) -> list[uuid.UUID]:
    """Wallets whose back-off is over and whose last recharge failed (so each failure is
    retried once: a retry a guard skips is not retried again until the next crossing)."""
    rows = (
        await conn.execute(
            sql("""
        SELECT s.wallet_id FROM auto_recharge_settings s
         WHERE s.enabled AND s.consecutive_failures > 0 AND s.backoff_until <= :now
           AND (SELECT r.status FROM auto_recharges r WHERE r.wallet_id = s.wallet_id
                 ORDER BY r.created_at DESC, r.id LIMIT 1) = 'failed'
         ORDER BY s.backoff_until LIMIT :limit"""),
            {"now": now, "limit": limit},
        )
    ).all()
    return [r.wallet_id for r in rows]


async def last_succeeded_before(
    conn: AsyncConnection, wallet_ids: list[uuid.UUID], cutoff: datetime
) -> set[uuid.UUID]:
    """Of `wallet_ids`, those whose latest recharge succeeded at or before `cutoff` without
    lifting the wallet back to its level."""
    if not wallet_ids:
        return set()
    rows = (
        await conn.execute(
            sql("""
        SELECT w.id FROM unnest(CAST(:ids AS uuid[])) AS w(id)
          JOIN LATERAL (SELECT r.status, r.settled_at, r.left_below FROM auto_recharges r
                         WHERE r.wallet_id = w.id
                         ORDER BY r.created_at DESC, r.id LIMIT 1) last ON true
         WHERE last.status = 'succeeded' AND last.left_below
           AND last.settled_at <= :cutoff"""),
            {"ids": wallet_ids, "cutoff": cutoff},
        )
    ).all()
    return {r.id for r in rows}


async def stale_in_flight(conn: AsyncConnection, before: datetime, limit: int) -> list[uuid.UUID]:
    """Recharges `requested` or `opening` whose last move was before `before`."""
    rows = (
        await conn.execute(
            sql("""
        SELECT id FROM auto_recharges
         WHERE status IN ('requested', 'opening') AND updated_at < :before
         ORDER BY updated_at LIMIT :limit"""),
            {"before": before, "limit": limit},
        )
    ).all()
    return [r.id for r in rows]


async def touch_if_stale(
    conn: AsyncConnection, recharge_id: uuid.UUID, before: datetime, at: datetime
) -> bool:
    """Mark a stale in-flight recharge as looked at `at` (so it is sent again once per
    stale period); False when it moved on or was touched since."""
    result = await conn.execute(
        sql("""
        UPDATE auto_recharges SET updated_at = :at
         WHERE id = :id AND status IN ('requested', 'opening') AND updated_at < :before"""),
        {"id": recharge_id, "before": before, "at": at},
    )
    return bool(result.rowcount == 1)


# --- the decision log ---------------------------------------------------------------------

# The decisions the log records (docs/architecture.md "Auto-recharge"); the metric's label.
DECISIONS = frozenset(
    {
        "configured",
        "fired",
        "skipped",
        "capped",
        "backed_off",
        "runaway",
        "checkout_opened",
        "charge_raised",
        "notified",
        "succeeded",
        "failed",
        "disabled",
    }
)


async def log(
    conn: AsyncConnection,
    wallet_id: uuid.UUID,
    recharge_id: uuid.UUID | None,
    decision: str,
    reason: str | None,
    data: dict[str, Any],
) -> None:
    await conn.execute(
        sql("""
        INSERT INTO auto_recharge_events (wallet_id, recharge_id, decision, reason, data)
        VALUES (:w, :r, :d, :reason, CAST(:data AS jsonb))"""),
        {
            "w": wallet_id,
            "r": recharge_id,
            "d": decision,
            "reason": reason,
            "data": json.dumps(data, default=str),
        },
    )
    label = decision if decision in DECISIONS else "other"
    aftercommit.count(conn, AUTO_RECHARGE_EVENTS.labels(label))


async def decisions(
    conn: AsyncConnection, wallet_id: uuid.UUID, *, before_id: int | None, limit: int
) -> list[Decision]:
    rows = (
        await conn.execute(
            sql("""
        SELECT id, wallet_id, recharge_id, decision, reason, data, created_at
          FROM auto_recharge_events
         WHERE wallet_id = :w AND (CAST(:before AS bigint) IS NULL OR id < :before)
         ORDER BY id DESC LIMIT :limit"""),
            {"w": wallet_id, "before": before_id, "limit": limit},
        )
    ).all()
    out = []
    for r in rows:
        data = r.data if isinstance(r.data, dict) else json.loads(r.data)
        out.append(
            Decision(r.id, r.wallet_id, r.recharge_id, r.decision, r.reason, data, r.created_at)
        )
    return out
