"""Scheduled work: ask Cashfree again about refunds it has not finished (a lost webhook, a
create call that never got an answer). The job only claims rows and sends
`refund.processing`; workers do the asking.

As for payments (`payments/jobs.py`): a refund whose `refund.sync` is still pending (unsent,
or sent and not consumed yet) is not sent again, and nothing is sent while Cashfree is
rate-limiting us."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway import backoff
from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.queues import outbox
from commdesk_billing.queues.runtime import in_flight_s

log = structlog.get_logger(__name__)


async def sync_open_refunds(
    engine: AsyncEngine, settings: Settings, *, now: datetime | None = None
) -> int:
    """Announce refunds Cashfree has not finished and nobody has asked about lately (a lost
    webhook, a create call that never got an answer) to `refund.processing`; how many were
    announced."""
    at = now or datetime.now(UTC)
    window = in_flight_s(settings)

    async def work(conn: AsyncConnection) -> int:
        paused = await backoff.active(conn)
        if paused is not None:
            log.info(
                "refund.sync.backed_off",
                until=paused.until.isoformat(),
                op=paused.op,
                hits=paused.hits,
            )
            return 0
        ids = await repo.due_for_sync(
            conn,
            older_than=at - timedelta(seconds=settings.refund_sync_after_s),
            limit=settings.payment_sync_batch,
        )
        announced = 0
        for refund_id in ids:
            # Claimed either way: a refund whose message is still pending steps aside for a
            # sync period, so the batch moves on to the others.
            await repo.mark_synced(conn, refund_id)
            sent = await outbox.send(
                conn,
                "refund.processing",
                "refund.sync",
                {"refund_id": str(refund_id), "source": "sync"},
                correlation_id=str(refund_id),
                unless_pending=True,
                in_flight_s=window,
            )
            if sent is not None:
                announced += 1
        if len(ids) > announced:
            log.info("refund.sync.still_pending", due=len(ids), announced=announced)
        return announced

    return await in_transaction(engine, work)
