"""Refreshing the rollups: a day's buckets recomputed whole from its source rows.

A bucket is never incremented: `refresh_day` deletes the day's rows and writes them again
from `sources.py`, under a lock on the day, so an event delivered twice, two workers on one
day, or a rebuild over days already done all leave the same figures. `analytics_days`
records when each day was last recomputed; once that was after the day ended (plus
`SETTLE_GRACE`, for transactions that were still committing), the day is settled and reads
take it from the rollups (`reads.py`).

Who refreshes: the `analytics.billing` consumer (the days an event touches), the scheduler's
`analytics_refresh` job (the recent days, and any day not yet settled), and
`commdesk-billing analytics rebuild --from --to`.
"""

from __future__ import annotations

import zlib
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.db.sql import sql
from commdesk_billing.modules.analytics import sources
from commdesk_billing.modules.analytics.activity import CommunityActivity
from commdesk_billing.modules.analytics.periods import Period, day_of, day_start, today

# A day recomputed this long after it ended is settled: its last transactions had committed.
SETTLE_GRACE = timedelta(minutes=10)
# The recent days the job recomputes every run: a payment created before midnight may be
# paid, failed or expired after it (its bucket is its creation day).
RECENT_DAYS = 2
# Days not yet settled, recomputed per job run (a first run after deployment catches up on
# the whole history a month at a time; `analytics rebuild` does it at once).
CATCH_UP_PER_RUN = 31

_LOCK_NS = 0x616E61  # "ana": the advisory-lock namespace of a day's refresh


def settled(day: date, refreshed_at: datetime) -> bool:
    return refreshed_at >= day_start(day + timedelta(days=1)) + SETTLE_GRACE


async def refresh_day(conn: AsyncConnection, day: date) -> None:
    """Recompute every PostgreSQL bucket of `day` in the caller's transaction."""
    await conn.execute(
        sql("SELECT pg_advisory_xact_lock(:ns, :day)"),
        {"ns": _LOCK_NS, "day": zlib.crc32(day.isoformat().encode()) & 0x7FFFFFFF},
    )
    window = {"start": day_start(day), "end": day_start(day + timedelta(days=1)), "day": day}
    await conn.execute(sql("DELETE FROM analytics_ledger_daily WHERE day = :day"), window)
    await conn.execute(sql("DELETE FROM analytics_activity_daily WHERE day = :day"), window)
    await conn.execute(
        sql(f"""
        INSERT INTO analytics_ledger_daily
               (day, account_id, journal_kind, ledger, debits, credits, entries)
        SELECT * FROM ({sources.LEDGER_SQL}) s"""),
        window,
    )
    await conn.execute(
        sql(f"""
        INSERT INTO analytics_activity_daily (day, metric, key1, key2, events, amount)
        SELECT * FROM ({sources.ACTIVITY_SQL}) s"""),
        window,
    )
    await conn.execute(
        sql("""
        INSERT INTO analytics_days (day, refreshed_at) VALUES (:day, clock_timestamp())
        ON CONFLICT (day) DO UPDATE SET refreshed_at = excluded.refreshed_at"""),
        window,
    )


async def settled_days(conn: AsyncConnection, period: Period) -> set[date]:
    rows = await conn.execute(
        sql("SELECT day, refreshed_at FROM analytics_days WHERE day BETWEEN :a AND :b"),
        {"a": period.first, "b": period.last},
    )
    return {d for d, at in rows if settled(d, at)}


async def unsettled_days(conn: AsyncConnection, period: Period) -> list[date]:
    done = await settled_days(conn, period)
    return [d for d in period.each_day() if d not in done]


async def _first_day(conn: AsyncConnection) -> date | None:
    first = await sources.first_posting(conn)
    return day_of(first) if first else None


async def _refresh(
    engine: AsyncEngine, day: date, sink: CommunityActivity | None, *, strict: bool
) -> None:
    async def work(conn: AsyncConnection) -> None:
        await refresh_day(conn, day)
        if sink is None:
            return
        if strict:
            # A rebuild: MongoDB away fails the command (that day rolled back, exit 4).
            await sink.write_day(conn, day)
        else:
            await sink.write_day_or_log(conn, day)

    await in_transaction(engine, work)


async def refresh_due(engine: AsyncEngine, sink: CommunityActivity | None = None) -> list[date]:
    """The scheduler's job: the recent days, and the oldest days not yet settled (up to
    `CATCH_UP_PER_RUN`), each in a transaction of its own. Returns the days recomputed."""
    now_day = today()
    recent = [now_day - timedelta(days=n) for n in range(RECENT_DAYS)]

    async def due(conn: AsyncConnection) -> list[date]:
        first = await _first_day(conn)
        if first is None:
            return []
        last = now_day - timedelta(days=RECENT_DAYS)
        if last < first:
            return []
        # Only the days since the first posting: an empty past needs no buckets.
        return (await unsettled_days(conn, Period(first, last)))[:CATCH_UP_PER_RUN]

    days = sorted(set(await in_transaction(engine, due)) | set(recent))
    for day in days:
        await _refresh(engine, day, sink, strict=False)
    return days


async def rebuild(
    engine: AsyncEngine, period: Period, sink: CommunityActivity | None = None
) -> int:
    """`analytics rebuild`: every day of the period recomputed from its source rows (and,
    with a sink, its communities' activity written to MongoDB again)."""
    for day in period.each_day():
        await _refresh(engine, day, sink, strict=True)
    return period.days
