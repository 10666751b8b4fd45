"""Scheduled work: settle every payee for the current period (once: UNIQUE payee + period,
so the hourly look finds the period's settlements made and makes no more), and ask Cashfree
about settlements in flight with no news for a while (a lost webhook, a create whose answer
never came), and, less often, about recently paid ones (a reversal whose webhook was
lost). The sync only claims rows and sends the command; workers do the asking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway import backoff
from commdesk_billing.gateway.factory import PAYOUTS_GATEWAY
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.settlements import repository as repo
from commdesk_billing.modules.settlements import service
from commdesk_billing.queues import outbox
from commdesk_billing.queues.runtime import in_flight_s

log = structlog.get_logger(__name__)


async def settle_period(
    engine: AsyncEngine,
    settings: Settings,
    communities: CommunityDirectory,
    *,
    now: datetime | None = None,
) -> int:
    """The scheduler's run for the period `now` falls in; how many settlements it made. A
    payee that waits (its community suspended, MongoDB not answering, …) is looked at again
    on the next run: the period is settled once, whenever it can be."""
    outcomes = await service.run(engine, settings, communities, by="scheduler", at=now)
    made = sum(1 for o in outcomes if o.created)
    if made:
        log.info("settlement.run", made=made, payees=len(outcomes))
    return made


async def sync_open_settlements(
    engine: AsyncEngine, settings: Settings, *, now: datetime | None = None, batch: int = 500
) -> int:
    """Announce settlements in flight that nobody has asked about lately; how many."""
    at = now or datetime.now(UTC)
    window = in_flight_s(settings)

    async def work(conn: AsyncConnection) -> int:
        # Payouts' own back-off (a 429 from Payouts), never PG's.
        paused = await backoff.active(conn, gateway=PAYOUTS_GATEWAY)
        if paused is not None:
            return 0
        ids = await repo.due_for_sync(
            conn,
            older_than=at - timedelta(seconds=settings.settlement_sync_after_s),
            limit=batch,
            paid_older_than=(
                at - timedelta(seconds=settings.settlement_paid_sync_after_s)
                if settings.settlement_reversal_watch_s
                else None
            ),
            paid_since=at - timedelta(seconds=settings.settlement_reversal_watch_s),
        )
        announced = 0
        for settlement_id in ids:
            await repo.mark_synced(conn, settlement_id, at)
            sent = await outbox.send(
                conn,
                "settlements.processing",
                "settlement.sync",
                {"settlement_id": str(settlement_id), "source": "sync"},
                correlation_id=str(settlement_id),
                unless_pending=True,
                in_flight_s=window,
            )
            if sent is not None:
                announced += 1
        return announced

    return await in_transaction(engine, work)
