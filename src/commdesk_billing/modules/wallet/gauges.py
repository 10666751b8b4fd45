"""Wallet figures for the metrics (the scheduler's `metrics_snapshot` job): wallets below
zero (CHECK constraints forbid it, so anything but 0 means the schema was changed under us)
and wallets with auto-recharge on (its adoption). One pass over `wallets`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.sql import sql
from commdesk_billing.telemetry.metrics import AUTO_RECHARGE_ENABLED_WALLETS, WALLETS_NEGATIVE


async def publish(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sql("""
                SELECT count(*) FILTER (WHERE available_credits < 0 OR locked_credits < 0
                                           OR pending_credits < 0) AS negative,
                       count(*) FILTER (WHERE auto_recharge_enabled) AS auto_recharge
                  FROM wallets""")
            )
        ).one()
    WALLETS_NEGATIVE.set(int(row.negative))
    AUTO_RECHARGE_ENABLED_WALLETS.set(int(row.auto_recharge))
