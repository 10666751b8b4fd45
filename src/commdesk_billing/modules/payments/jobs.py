"""Scheduled work: ask Cashfree about orders that have been quiet too long.

A webhook can be lost (our endpoint down past Cashfree's last retry, a dropped delivery); the
sync makes that cost a delay, never a purchase. The job itself only claims rows and
announces `payment.processing`; the workers do the asking, so a slow Cashfree never stalls
the scheduler.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.queues import outbox


async def sync_open_payments(engine: AsyncEngine, settings: Settings) -> int:
    async def work(conn: AsyncConnection) -> int:
        due = await repo.due_for_sync(
            conn, older_than_s=settings.payment_sync_after_s, limit=settings.payment_sync_batch
        )
        for payment_id, order_id, expires_at in due:
            await outbox.send(
                conn,
                "payment.processing",
                "payment.sync",
                {
                    "payment_id": str(payment_id),
                    "order_id": order_id,
                    "order_expires_at": expires_at.isoformat(),
                    "source": "sync",
                },
                correlation_id=str(payment_id),
            )
        return len(due)

    return await in_transaction(engine, work)
