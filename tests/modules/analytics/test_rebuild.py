"""`commdesk-billing analytics rebuild --from --to`, run as an operator runs it: every day of
the range recomputed and stamped, the buckets equal to the ledger's legs, twice over with
the same result; a bad range refused before anything is touched."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.modules.analytics import rollups
from commdesk_billing.modules.analytics.periods import Period, today
from tests.conftest import new_wallet
from tests.harness.mongo import MongoTarget


def _cli(settings: Settings, mongodb: MongoTarget, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": settings.database_url,
        "BILLING_MONGODB_URL": mongodb.url,
        "BILLING_MONGODB_DATABASE": mongodb.database,
        "BILLING_LOG_JSON": "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "commdesk_billing.cli", "analytics", "rebuild", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _buckets_and_ledger(
    engine: AsyncEngine, period: Period
) -> tuple[list[object], list[object]]:
    async with engine.connect() as conn:
        buckets = (
            await conn.execute(
                text("""SELECT account_id, sum(debits), sum(credits) FROM analytics_ledger_daily
                         WHERE day BETWEEN :a AND :b GROUP BY 1 ORDER BY 1"""),
                {"a": period.first, "b": period.last},
            )
        ).all()
        ledger = (
            await conn.execute(
                text("""SELECT account_id,
                               coalesce(sum(amount) FILTER (WHERE amount > 0), 0),
                               coalesce(-sum(amount) FILTER (WHERE amount < 0), 0)
                          FROM ledger_entries WHERE created_at >= :s AND created_at < :e
                         GROUP BY 1 ORDER BY 1"""),
                {"s": period.start, "e": period.end},
            )
        ).all()
    return list(buckets), list(ledger)


async def test_rebuild_recomputes_every_day_from_the_ledger(
    settings: Settings, engine: AsyncEngine, mongodb: MongoTarget
) -> None:
    await new_wallet(engine, 700)  # a grant and its payment: legs in today's bucket
    period = Period(today() - timedelta(days=2), today())
    args = ("--from", period.first.isoformat(), "--to", period.last.isoformat())
    for _ in range(2):
        done = await asyncio.to_thread(_cli, settings, mongodb, *args)
        assert done.returncode == 0, done.stderr
        assert (
            f"rebuilt 3 days of analytics rollups, {period.first} to {period.last}" in done.stdout
        )
        buckets, ledger = await _buckets_and_ledger(engine, period)
        assert buckets == ledger and len(ledger) >= 4
    as_json = await asyncio.to_thread(_cli, settings, mongodb, *args, "--json", "--no-mongo")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {
        "days": 3,
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
    }
    async with engine.connect() as conn:
        stamped = await conn.scalar(
            text("SELECT count(*) FROM analytics_days WHERE day BETWEEN :a AND :b"),
            {"a": period.first, "b": period.last},
        )
    assert stamped == 3

    bad = await asyncio.to_thread(
        _cli, settings, mongodb, "--from", "2026-12-09", "--to", "2026-12-01"
    )
    assert bad.returncode == 2 and "`from` is after `to`" in bad.stderr


async def test_the_job_recomputes_the_recent_days_and_catches_up_on_the_past(
    engine: AsyncEngine,
) -> None:
    await new_wallet(engine, 300)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM analytics_days"))
    done = await rollups.refresh_due(engine)
    assert today() in done and today() - timedelta(days=1) in done
    again = await rollups.refresh_due(engine)
    # The recent days every run; a past day once it is settled, never again.
    assert set(again) <= set(done) and today() in again
    async with engine.connect() as conn:
        days = {d for (d,) in await conn.execute(text("SELECT day FROM analytics_days"))}
    assert set(done) <= days
