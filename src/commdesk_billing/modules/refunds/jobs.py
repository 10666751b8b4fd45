"""Scheduled work: ask Cashfree again about refunds it has not finished (a lost webhook, a
create call that never got an answer). The job only claims rows and sends
`refund.processing`; workers do the asking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.queues import outbox


async def sync_open_refunds(
    engine: AsyncEngine, settings: Settings, *, now: datetime | None = None
) -> int:
    """Announce refunds Cashfree has not finished and nobody has asked about lately (a lost
    webhook, a create call that never got an answer) to `refund.processing`."""
    at = now or datetime.now(UTC)

    async def work(conn: AsyncConnection) -> int:
        ids = await repo.due_for_sync(
            conn,
            older_than=at - timedelta(seconds=settings.refund_sync_after_s),
            limit=settings.payment_sync_batch,
        )
        for refund_id in ids:
            await repo.mark_synced(conn, refund_id)
            await outbox.send(
                conn,
                "refund.processing",
                "refund.sync",
                {"refund_id": str(refund_id), "source": "sync"},
                correlation_id=str(refund_id),
            )
        return len(ids)

    return await in_transaction(engine, work)
