"""The crossing: installed as the wallet's low-balance hook (`wallet.triggers`) by wiring.

Runs in the debit's transaction with the wallet's row locked, so two crossings of one wallet
are one after the other; the partial unique index on in-flight recharges makes "never two in
flight" hold even so (a second crossing while one is in flight writes no request, only its
decision). The request is a command on `payment.processing` through the outbox: it commits
with the debit or not at all.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.autorecharge import repository as repo
from commdesk_billing.modules.wallet.model import Wallet
from commdesk_billing.queues import outbox

log = structlog.get_logger(__name__)


async def on_crossing(conn: AsyncConnection, wallet: Wallet, available_before: int) -> None:
    await request(conn, wallet, available_before, cause=None)


async def request(
    conn: AsyncConnection, wallet: Wallet, available_before: int, *, cause: str | None
) -> bool:
    """Write a request for the locked `wallet` unless one is in flight; whether it wrote.
    `cause`: None for a crossing, `retry_after_backoff` for the settle job's retry,
    `enabled_below_level` when the member turns it on below its level."""
    level = wallet.auto_recharge_trigger
    if level is None:  # pragma: no cover - callers only ask when a level is set
        return False
    recharge_id = uuid.uuid4()
    facts = {
        "available_before": available_before,
        "available_credits": wallet.available_credits,
        "trigger_level": level,
        "threshold": wallet.auto_recharge_threshold,
    }
    written = await repo.insert_request(
        conn,
        recharge_id,
        wallet.id,
        trigger_level=level,
        available_credits=wallet.available_credits,
    )
    if not written:
        await repo.log(conn, wallet.id, None, "skipped", "in_flight", facts)
        return False
    await repo.log(conn, wallet.id, recharge_id, "fired", cause, facts)
    await outbox.send(
        conn,
        "payment.processing",
        "auto_recharge.requested",
        {"recharge_id": str(recharge_id), "wallet_id": str(wallet.id)},
        correlation_id=str(recharge_id),
    )
    await outbox.announce(
        conn,
        "wallet.low_balance",
        {
            "wallet_id": str(wallet.id),
            "user_id": str(wallet.owner_id),
            "available_credits": wallet.available_credits,
            "threshold": wallet.auto_recharge_threshold,
            "trigger_level": level,
        },
        correlation_id=str(recharge_id),
    )
    log.info(
        "auto_recharge.fired", wallet_id=str(wallet.id), recharge_id=str(recharge_id), cause=cause
    )
    return True
