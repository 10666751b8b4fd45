"""The wallet's periodic jobs: release holds nobody captured before they expired, and
forfeit credits whose lots expired (wallet/expiry.py)."""

from __future__ import annotations

import uuid
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import HoldNotActive
from commdesk_billing.modules.wallet import repository as repo
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.common import now
from commdesk_billing.modules.wallet.expiry import expire_wallet

log = structlog.get_logger(__name__)


async def _release_expired(conn: AsyncConnection, hold_id: uuid.UUID) -> ws.OperationResult:
    return await ws.release_credits(
        conn,
        hold_id=hold_id,
        idempotency_key=f"hold-expiry:{hold_id}",
        expired=True,
        reason="hold expired",
    )


async def expire_holds(engine: AsyncEngine, *, batch: int = 500) -> int:
    """One transaction per hold, so a busy wallet never holds up the rest. Idempotent by
    the hold id: two expirers racing release each hold once."""
    released = 0
    while True:
        ids = await in_transaction(engine, lambda c: ws.expirable_holds(c, limit=batch))
        if not ids:
            return released
        for hold_id in ids:
            try:
                result = await in_transaction(engine, partial(_release_expired, hold_id=hold_id))
            except HoldNotActive:
                continue  # captured or released while we looked
            if not result.replayed:
                released += 1
                log.info("wallet.hold.expired", hold_id=str(hold_id), credits=result.line.credits)
        if len(ids) < batch:
            return released


async def expire_lots(engine: AsyncEngine, *, batch: int = 200) -> int:
    """Forfeit expired credits, one transaction per wallet (its row lock only); how many
    credits. Idempotent by each lot's state: two runs forfeit each credit once."""
    forfeited = 0
    while True:
        wallets = await in_transaction(
            engine, lambda c: repo.wallets_with_expired_lots(c, now(), limit=batch)
        )
        done = 0
        for wallet_id in wallets:
            credits = await in_transaction(engine, partial(expire_wallet, wallet_id=wallet_id))
            if credits:
                done += 1
                forfeited += credits
                log.info("wallet.credits.expired", wallet_id=str(wallet_id), credits=credits)
        # Wallets whose expired credits all back holds come back every time: stop there.
        if len(wallets) < batch or done == 0:
            return forfeited
