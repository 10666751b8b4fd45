"""Credits that became available in a wallet by a way other than a purchase's crediting.

A purchase's crediting announces `payment.credited`, which is what waits on a wallet's new
credits hears of (usage debt is repaid from them). Credits can become available without
it: a fraud reviewer releases a purchase's held credits, finance grants promotional ones,
another service grants by message. Those operations announce `wallet.credits_available`
here, in their own transaction, so the same consumers hear of them too.

The wallet knows nothing of who listens (usage imports the wallet, never the other way):
the routing table (`wiring`) routes the event, and its routes' conditions decide, in this
transaction, whether anyone has something to do (a wallet without usage debt costs one
index probe and no message). Called with the wallet's row lock held, so such a condition
reads a state that cannot move before this commits.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.queues import outbox

CREDITS_AVAILABLE = "wallet.credits_available"


async def announce(
    conn: AsyncConnection, *, wallet_id: uuid.UUID, credits: int, cause: str
) -> None:
    """`credits` became available in the (locked) wallet, for `cause`: a short name of the
    operation, unique to it (a consumer keys what it does by it and the wallet), at most
    200 characters."""
    if credits <= 0:
        return
    await outbox.announce(
        conn,
        "wallet.credits_available",
        {"wallet_id": str(wallet_id), "credits": credits, "cause": cause},
    )
