"""Reading the rollups: settled days from the buckets, every other day from the source rows
(`sources.py`, the same statements that fill the buckets). So a figure is never behind the
ledger, and a year's query reads a year of buckets, not a year of entries."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.analytics import rollups, sources
from commdesk_billing.modules.analytics.periods import Period, day_of, ranges
from commdesk_billing.modules.analytics.sources import ActivityRow, LedgerRow


async def ledger_rows(conn: AsyncConnection, period: Period) -> list[LedgerRow]:
    """Per day, account and journal kind: what was posted in the period."""
    done = await rollups.settled_days(conn, period)
    rows: list[LedgerRow] = []
    if done:
        result = await conn.execute(
            sql("""
            SELECT day, account_id, journal_kind, ledger, debits, credits, entries
              FROM analytics_ledger_daily WHERE day = ANY(CAST(:days AS date[]))"""),
            {"days": sorted(done)},
        )
        rows += [LedgerRow(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6])) for r in result]
    for run in ranges([d for d in period.each_day() if d not in done]):
        rows += await sources.ledger(conn, run.start, run.end)
    return rows


async def activity_rows(conn: AsyncConnection, period: Period) -> list[ActivityRow]:
    """Per day, metric and keys: the business rows of the period, counted."""
    done = await rollups.settled_days(conn, period)
    rows: list[ActivityRow] = []
    if done:
        result = await conn.execute(
            sql("""
            SELECT day, metric, key1, key2, events, amount
              FROM analytics_activity_daily WHERE day = ANY(CAST(:days AS date[]))"""),
            {"days": sorted(done)},
        )
        rows += [ActivityRow(r[0], r[1], r[2], r[3], int(r[4]), int(r[5])) for r in result]
    for run in ranges([d for d in period.each_day() if d not in done]):
        rows += await sources.activity(conn, run.start, run.end)
    return rows


@dataclass(frozen=True)
class Balance:
    ledger: str
    amount: int  # signed: debit > 0


async def balances_before(conn: AsyncConnection, day: date) -> dict[uuid.UUID, Balance]:
    """Every account's balance at the start of `day` (the sum of all its entries before):
    the settled days' buckets, plus the source rows of the days before it not settled."""
    first = await sources.first_posting(conn)
    if first is None or day_of(first) >= day:
        return {}
    past = Period(day_of(first), day - timedelta(days=1))
    done = await rollups.settled_days(conn, past)
    totals: dict[uuid.UUID, int] = defaultdict(int)
    ledgers: dict[uuid.UUID, str] = {}
    if done:
        result = await conn.execute(
            sql("""
            SELECT account_id, ledger, sum(debits) - sum(credits)
              FROM analytics_ledger_daily WHERE day = ANY(CAST(:days AS date[]))
             GROUP BY account_id, ledger"""),
            {"days": sorted(done)},
        )
        for account_id, ledger, amount in result:
            totals[account_id] += int(amount)
            ledgers[account_id] = ledger
    for run in ranges([d for d in past.each_day() if d not in done]):
        for row in await sources.ledger(conn, run.start, run.end):
            totals[row.account_id] += row.debits - row.credits
            ledgers[row.account_id] = row.ledger
    return {a: Balance(ledgers[a], amount) for a, amount in totals.items()}
