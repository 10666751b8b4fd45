"""Scheduled work: ask Cashfree about orders that have been quiet too long.

A webhook can be lost (our endpoint down past Cashfree's last retry, a dropped delivery); the
sync makes that cost a delay, never a purchase. The job itself only claims rows and
announces `payment.processing`; the workers do the asking, so a slow Cashfree never stalls
the scheduler.

No storms: a payment whose `payment.sync` is still pending (unsent, or sent and not consumed
yet, `outbox.send(..., unless_pending=True)`) is not announced again, so a broker outage adds
one row per open payment however long it lasts; and while Cashfree is rate-limiting us
(`gateway.backoff`, written by every client that saw a 429) nothing new is announced.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway import backoff
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.queues import outbox
from commdesk_billing.queues.runtime import in_flight_s

log = structlog.get_logger(__name__)


async def sync_open_payments(engine: AsyncEngine, settings: Settings) -> int:
    """Announce the payments due for a look at Cashfree; how many were announced."""
    window = in_flight_s(settings)

    async def work(conn: AsyncConnection) -> int:
        paused = await backoff.active(conn)
        if paused is not None:
            # Claim nothing: the rows stay due and are taken once the back-off is over.
            log.info(
                "payment.sync.backed_off",
                until=paused.until.isoformat(),
                op=paused.op,
                hits=paused.hits,
            )
            return 0
        # Claimed (stamped) whether announced or not: a payment whose message is still
        # pending steps aside for a sync period, so the batch moves on to the others.
        due = await repo.due_for_sync(
            conn, older_than_s=settings.payment_sync_after_s, limit=settings.payment_sync_batch
        )
        announced = 0
        for payment_id, order_id, expires_at, subscription_id in due:
            sent = await outbox.send(
                conn,
                "payment.processing",
                "payment.sync",
                {
                    "payment_id": str(payment_id),
                    "order_id": order_id,
                    "order_expires_at": expires_at.isoformat(),
                    "source": "sync",
                    # A charge on a mandate: asked of the subscription payment API.
                    **({"subscription_id": subscription_id} if subscription_id else {}),
                },
                correlation_id=str(payment_id),
                unless_pending=True,
                in_flight_s=window,
            )
            if sent is not None:
                announced += 1
        if len(due) > announced:
            log.info("payment.sync.still_pending", due=len(due), announced=announced)
        return announced

    return await in_transaction(engine, work)
