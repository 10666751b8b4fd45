"""The house accounts' balances for the metrics (the scheduler's `metrics_snapshot` job):
revenue recognized, deferred revenue and fees read from the ledger itself, so they can never
drift from the books (a counter incremented in a transaction would count a rolled-back or
re-run one).

House balances come from `ledger_rollups` (the sealer keeps the sealed prefix's sum per
account, one row each, a running total) plus the unsealed tail, in one snapshot
(`reads.account_balances`), for the house accounts found by an index: a read costs the same
whatever the ledger's size or the number of wallets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.ledger.reads import account_balances
from commdesk_billing.telemetry.metrics import (
    LEDGER_HOUSE_BALANCE_CREDITS,
    LEDGER_HOUSE_BALANCE_PAISE,
    REVENUE_PAISE,
)

# billing_revenue_paise{kind}: which INR house accounts make up each figure.
REVENUE_KINDS: dict[str, tuple[str, ...]] = {
    "recognized": ("inr:platform_revenue", "inr:breakage_revenue", "inr:subscription_revenue"),
    "deferred": ("inr:deferred_revenue",),
    "fees": ("inr:platform_fee_revenue", "inr:sponsorship_fee_revenue", "inr:payout_fee_revenue"),
}


@dataclass(frozen=True)
class HouseAccount:
    id: uuid.UUID
    code: str
    ledger: str
    credit_normal: bool


@dataclass
class HouseBalances:
    """The house accounts' balances, read from the roll-up (no state of its own any more)."""

    async def read(self, engine: AsyncEngine) -> dict[str, tuple[str, int]]:
        """code -> (ledger, balance on the account's normal side), in one snapshot."""
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                accounts = await _house_accounts(conn)
                totals = await account_balances(conn, [a.id for a in accounts])
        balances: dict[str, tuple[str, int]] = {}
        for a in accounts:
            total = totals.get(a.id, 0)
            balances[a.code] = (a.ledger, -total if a.credit_normal else total)
        return balances


def house_accounts_sql() -> TextClause:
    """The house accounts: the platform's own, `inr:…` and `credits:…`. Per-owner accounts
    (wallet:, community:, partner:) are never a label (thousands of them). Two ranges of the
    partial index `ledger_accounts_house` (migration 0033): without `wallet_id IS NULL` and
    the pattern index this read scanned every account, two per wallet."""
    return sql("""
        SELECT id, code, ledger, normal_side = 'credit' AS credit_normal
          FROM ledger_accounts
         WHERE wallet_id IS NULL AND (code LIKE 'inr:%' OR code LIKE 'credits:%')
         ORDER BY code""")


async def _house_accounts(conn: AsyncConnection) -> list[HouseAccount]:
    rows = (await conn.execute(house_accounts_sql())).all()
    return [HouseAccount(r.id, r.code, r.ledger, bool(r.credit_normal)) for r in rows]


def publish(balances: dict[str, tuple[str, int]]) -> None:
    """Set the house-balance and revenue gauges from `read`'s answer."""
    for code, (ledger, balance) in balances.items():
        gauge = LEDGER_HOUSE_BALANCE_PAISE if ledger == "INR" else LEDGER_HOUSE_BALANCE_CREDITS
        gauge.labels(code).set(balance)
    for kind, codes in REVENUE_KINDS.items():
        REVENUE_PAISE.labels(kind).set(sum(balances.get(c, ("INR", 0))[1] for c in codes))
