"""Accounts opened on demand by many first uses at once: one account, never an error (the
insert's conflict on either the code or the id, both derived from the community, is the
same account)."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.accounts import open_community_accounts, open_partner_accounts


async def test_first_uses_racing_open_each_account_once(engine: AsyncEngine) -> None:
    for _ in range(15):
        community, partner = f"race-{uuid.uuid4().hex[:10]}", f"p-{uuid.uuid4().hex[:10]}"

        async def open_both(conn: AsyncConnection, c: str = community, p: str = partner) -> None:
            await open_community_accounts(conn, c)
            await open_partner_accounts(conn, p)

        await asyncio.gather(*(in_transaction(engine, open_both) for _ in range(12)))
        async with engine.connect() as conn:
            n = (
                await conn.exec_driver_sql(
                    "SELECT count(*) FROM ledger_accounts WHERE code IN ($1, $2, $3)",
                    (
                        f"community:{community}:earnings",
                        f"community:{community}:payable",
                        f"partner:{partner}:payable",
                    ),
                )
            ).scalar()
        assert n == 3
