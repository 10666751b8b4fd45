"""Ledger accounts opened on demand: a community's earnings and payable accounts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.ledger.model import CommunityAccounts

# Communities whose accounts this process has seen committed. Accounts are never removed,
# so once seen they need no statement again: a hot community's spends skip the insert.
_OPENED: set[str] = set()
_OPENED_MAX = 100_000


async def open_community_accounts(conn: AsyncConnection, community_id: str) -> CommunityAccounts:
    """The community's accounts, created on its first spend. Idempotent: later spends find
    them (the insert does nothing), so no spend waits on another past the very first."""
    accounts = CommunityAccounts.of(community_id)
    if community_id in _OPENED:
        return accounts
    result = await conn.execute(
        sql("""
        INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
        VALUES (:earnings, :earnings_code, 'CREDITS', 'community_earnings', 'credit', true,
                :earnings_name),
               (:payable, :payable_code, 'INR', 'community_payable', 'credit', true,
                :payable_name)
        ON CONFLICT (code) DO NOTHING"""),
        {
            "earnings": accounts.earnings,
            "earnings_code": f"community:{community_id}:earnings",
            "earnings_name": f"Credits community {community_id} earned",
            "payable": accounts.payable,
            "payable_code": f"community:{community_id}:payable",
            # May go negative: a spend reversed after a settlement is a receivable, netted
            # from the next settlement.
            "payable_name": f"What we owe community {community_id}",
        },
    )
    if result.rowcount == 0:
        # Both existed, and were committed (a concurrent insert would have been waited for):
        # safe to remember. Ours, just inserted, may yet roll back: not remembered.
        if len(_OPENED) >= _OPENED_MAX:
            _OPENED.clear()
        _OPENED.add(community_id)
    return accounts
