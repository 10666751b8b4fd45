"""Ledger accounts opened on demand: a community's earnings and payable accounts, a
partner's payable account.

The inserts name no conflict target: an account's id is derived from its code, so two first
uses racing conflict on either the id or the code, and either way the account is the same
one (with `ON CONFLICT (code)` the loser of the race could fail on the primary key)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.ledger.model import CommunityAccounts, PartnerAccounts

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
        ON CONFLICT DO NOTHING"""),
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


async def open_partner_accounts(conn: AsyncConnection, partner_id: str) -> PartnerAccounts:
    """The partner's payable account, created with its first share. Idempotent, like a
    community's: later shares find it. Partners earn far less often than communities are
    spent in, so no per-process memory is kept."""
    accounts = PartnerAccounts.of(partner_id)
    await conn.execute(
        sql("""
        INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side, allow_negative, name)
        VALUES (:payable, :code, 'INR', 'partner_payable', 'credit', true, :name)
        ON CONFLICT DO NOTHING"""),
        {
            "payable": accounts.payable,
            "code": f"partner:{partner_id}:payable",
            # May go negative: a refund after a settlement takes back a share already paid,
            # a receivable netted from the next settlement.
            "name": f"What we owe partner {partner_id}",
        },
    )
    return accounts
