"""The source rows each rollup is made of, read for a window of whole Indian days, grouped
per day. The same statements fill a day's buckets (`rollups.refresh_day`) and answer for
the days no settled bucket covers (`reads.py`), so a rollup and a live read cannot disagree.

Every table here belongs to another module (`tables.py` SHARED: reads only): analytics
writes nothing but its own rollups.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql

# The Indian calendar day of a timestamptz column (UTC+05:30, no daylight saving).
_DAY = "((({col}) + interval '5 hours 30 minutes') AT TIME ZONE 'UTC')::date"


def day_expr(column: str) -> str:
    return _DAY.format(col=column)


@dataclass(frozen=True)
class LedgerRow:
    """What one journal kind posted to one account on one day."""

    day: date
    account_id: uuid.UUID
    journal_kind: str
    ledger: str
    debits: int  # sum of the debit legs (positive)
    credits: int  # sum of the credit legs, as a positive number
    entries: int


@dataclass(frozen=True)
class ActivityRow:
    """A count (and an amount, where one means something) of business rows of one day."""

    day: date
    metric: str
    key1: str
    key2: str
    events: int
    amount: int


LEDGER_SQL = f"""
    SELECT {day_expr("e.created_at")} AS day, e.account_id, j.kind, e.ledger,
           coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0) AS debits,
           coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0), 0) AS credits,
           count(*) AS entries
      FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
     WHERE e.created_at >= :start AND e.created_at < :end
     GROUP BY 1, e.account_id, j.kind, e.ledger
"""

# Each part: (day, metric, key1, key2, events, amount).
ACTIVITY_SQL = f"""
    SELECT {day_expr("created_at")}, 'payments', status, coalesce(payment_method, 'none'),
           count(*), sum(amount_paise)
      FROM payments WHERE created_at >= :start AND created_at < :end
     GROUP BY 1, status, payment_method
    UNION ALL
    SELECT {day_expr("created_at")}, 'refunds', status, '', count(*), sum(amount_paise)
      FROM refunds WHERE created_at >= :start AND created_at < :end
     GROUP BY 1, status
    UNION ALL
    SELECT {day_expr("created_at")}, 'auto_recharges', status, '', count(*),
           coalesce(sum(amount_paise), 0)
      FROM auto_recharges WHERE created_at >= :start AND created_at < :end
     GROUP BY 1, status
    UNION ALL
    SELECT {day_expr("created_at")}, 'settlements', status, '', count(*), sum(gross_paise)
      FROM settlements WHERE created_at >= :start AND created_at < :end
     GROUP BY 1, status
    UNION ALL
    SELECT {day_expr("created_at")}, 'fraud_events', kind, severity, count(*), 0
      FROM fraud_events WHERE created_at >= :start AND created_at < :end
     GROUP BY 1, kind, severity
"""

# Per community and day: spends, credits spent, members who spent (non-financial:
# written to MongoDB, `activity.py`).
COMMUNITY_SQL = f"""
    SELECT {day_expr("created_at")} AS day, community_id, count(*) AS spends,
           sum(credits) AS credits, count(DISTINCT user_external_id) AS members
      FROM community_spends WHERE created_at >= :start AND created_at < :end
     GROUP BY 1, community_id
"""


async def ledger(conn: AsyncConnection, start: datetime, end: datetime) -> list[LedgerRow]:
    rows = await conn.execute(sql(LEDGER_SQL), {"start": start, "end": end})
    return [LedgerRow(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6])) for r in rows]


async def activity(conn: AsyncConnection, start: datetime, end: datetime) -> list[ActivityRow]:
    rows = await conn.execute(sql(ACTIVITY_SQL), {"start": start, "end": end})
    return [ActivityRow(r[0], r[1], r[2], r[3] or "", int(r[4]), int(r[5] or 0)) for r in rows]


@dataclass(frozen=True)
class CommunityDay:
    day: date
    community_id: str
    spends: int
    credits: int
    members: int


async def communities(conn: AsyncConnection, start: datetime, end: datetime) -> list[CommunityDay]:
    rows = await conn.execute(sql(COMMUNITY_SQL), {"start": start, "end": end})
    return [CommunityDay(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]


async def first_posting(conn: AsyncConnection) -> datetime | None:
    """When the ledger's first entry was posted (its days are the trial balance's past)."""
    value = await conn.scalar(sql("SELECT min(created_at) FROM ledger_entries"))
    return value if isinstance(value, datetime) else None


async def day_of_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> datetime | None:
    value = await conn.scalar(
        sql("SELECT created_at FROM payments WHERE id = :id"), {"id": payment_id}
    )
    return value if isinstance(value, datetime) else None


async def day_of_refund(conn: AsyncConnection, refund_id: uuid.UUID) -> datetime | None:
    value = await conn.scalar(
        sql("SELECT created_at FROM refunds WHERE id = :id"), {"id": refund_id}
    )
    return value if isinstance(value, datetime) else None


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    code: str
    kind: str
    ledger: str
    normal_side: str
    name: str


async def accounts(conn: AsyncConnection, ids: list[uuid.UUID]) -> dict[uuid.UUID, Account]:
    rows = await conn.execute(
        sql("""
        SELECT id, code, kind, ledger, normal_side, name FROM ledger_accounts
         WHERE id = ANY(CAST(:ids AS uuid[]))"""),
        {"ids": ids},
    )
    return {r[0]: Account(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows}
