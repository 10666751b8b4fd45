"""The house accounts' balances for the metrics (the scheduler's `metrics_snapshot` job):
revenue recognized, deferred revenue and fees read from the ledger itself, so they can never
drift from the books (a counter incremented in a transaction would count a rolled-back or
re-run one).

House balances are sums of their legs (they keep no balance row, see docs/architecture.md
"Hot accounts"), and summing every leg each time grows with the ledger. So the sums of the
*sealed* prefix are kept here and only extended: every entry up to the last seal's
`last_entry_id` is committed and no later commit can add one below it (`seal.py` waits for
older transactions before sealing), so that prefix never changes. Each read adds the newly
sealed entries, then sums the unsealed tail (a minute of postings) in the same snapshot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.sql import sql
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
    """One per scheduler process: the sealed prefix's sums, extended run by run."""

    sealed_through: int = 0
    sealed_sums: dict[uuid.UUID, int] = field(default_factory=dict)

    async def read(self, engine: AsyncEngine) -> dict[str, tuple[str, int]]:
        """code -> (ledger, balance on the account's normal side), in one snapshot."""
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                accounts = await _house_accounts(conn)
                ids = [a.id for a in accounts]
                sealed = int(
                    (
                        await conn.execute(
                            sql("SELECT coalesce(max(last_entry_id), 0) FROM ledger_seals")
                        )
                    ).scalar_one()
                )
                if sealed > self.sealed_through:
                    added = await _sums(conn, ids, after=self.sealed_through, through=sealed)
                    for account_id, amount in added.items():
                        self.sealed_sums[account_id] = self.sealed_sums.get(account_id, 0) + amount
                    self.sealed_through = sealed
                tail = await _sums(conn, ids, after=self.sealed_through, through=None)
        balances: dict[str, tuple[str, int]] = {}
        for a in accounts:
            total = self.sealed_sums.get(a.id, 0) + tail.get(a.id, 0)
            balances[a.code] = (a.ledger, -total if a.credit_normal else total)
        return balances


async def _house_accounts(conn: AsyncConnection) -> list[HouseAccount]:
    # House accounts are the platform's own: `inr:…` and `credits:…`. Per-owner accounts
    # (wallet:, community:, partner:) are never a label (thousands of them).
    rows = (
        await conn.execute(
            sql("""
            SELECT id, code, ledger, normal_side = 'credit' AS credit_normal
              FROM ledger_accounts
             WHERE code LIKE 'inr:%' OR code LIKE 'credits:%'
             ORDER BY code""")
        )
    ).all()
    return [HouseAccount(r.id, r.code, r.ledger, bool(r.credit_normal)) for r in rows]


async def _sums(
    conn: AsyncConnection, ids: list[uuid.UUID], *, after: int, through: int | None
) -> dict[uuid.UUID, int]:
    params: dict[str, object] = {"ids": ids, "after": after}
    upper = ""
    if through is not None:
        upper, params["through"] = " AND id <= :through", through
    rows = (
        await conn.execute(
            sql(f"""
            SELECT account_id, sum(amount) AS total
              FROM ledger_entries
             WHERE account_id = ANY(:ids) AND id > :after{upper}
             GROUP BY account_id"""),
            params,
        )
    ).all()
    return {r.account_id: int(r.total) for r in rows}


def publish(balances: dict[str, tuple[str, int]]) -> None:
    """Set the house-balance and revenue gauges from `read`'s answer."""
    for code, (ledger, balance) in balances.items():
        gauge = LEDGER_HOUSE_BALANCE_PAISE if ledger == "INR" else LEDGER_HOUSE_BALANCE_CREDITS
        gauge.labels(code).set(balance)
    for kind, codes in REVENUE_KINDS.items():
        REVENUE_PAISE.labels(kind).set(sum(balances.get(c, ("INR", 0))[1] for c in codes))
