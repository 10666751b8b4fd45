"""Scheduled work: ask Cashfree about mandates that may still change (a lost webhook costs a
delay, never a wrong status), and send again a member's CANCEL that Cashfree has not taken.
The job only claims rows and sends `mandate.refresh`; the workers do the asking."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway import backoff
from commdesk_billing.modules.mandates import repository as repo
from commdesk_billing.modules.mandates import status
from commdesk_billing.queues import outbox
from commdesk_billing.queues.runtime import in_flight_s


async def sync_open_mandates(engine: AsyncEngine, settings: Settings) -> int:
    """Send `mandate.refresh` for the mandates due a look; how many were sent."""
    window = in_flight_s(settings)

    async def work(conn: AsyncConnection) -> int:
        if await backoff.active(conn) is not None:
            return 0  # Cashfree is rate-limiting us (one app, one limit): nothing new now
        due = await repo.due_for_refresh(
            conn, older_than_s=settings.payment_sync_after_s, limit=settings.payment_sync_batch
        )
        sent = 0
        for mandate_id in due:
            m = await repo.get(conn, mandate_id)
            if m is None:
                continue
            if (
                await outbox.send(
                    conn,
                    "payment.processing",
                    "mandate.refresh",
                    {"mandate_id": str(m.id), "cancel": status.needs_cancel(m)},
                    correlation_id=str(m.id),
                    unless_pending=True,
                    in_flight_s=window,
                )
                is not None
            ):
                sent += 1
        return sent

    return await in_transaction(engine, work)
