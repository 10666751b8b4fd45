"""The `analytics.billing` consumer: an event that moved money recomputes the rollup buckets
of the days it touched (`rollups.refresh_day`), and their communities' activity in MongoDB.

Which days: the one the event happened on, and the creation day of the payment or refund it
names (payments and refunds are bucketed by the day they were opened, so a payment opened
before midnight and credited after it changes yesterday's bucket). A bucket is recomputed
whole from its source rows, never incremented: a redelivered message (which the inbox turns
away anyway) or two events of one day leave the same figures.

A recompute reads the whole day's rows, so one per event would cost a busy day's volume
squared, each holding the day's lock; the queue is consumed in batches instead (`many`):
each day a batch touches is recomputed once, after every event in it."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.modules.analytics import rollups, sources
from commdesk_billing.modules.analytics.activity import CommunityActivity
from commdesk_billing.modules.analytics.periods import day_of
from commdesk_billing.queues.envelope import Envelope


def _uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def days_touched(conn: AsyncConnection, envelope: Envelope) -> list[date]:
    found: list[datetime | None] = [envelope.occurred_at]
    if (payment_id := _uuid(envelope.payload.get("payment_id"))) is not None:
        found.append(await sources.day_of_payment(conn, payment_id))
    if (refund_id := _uuid(envelope.payload.get("refund_id"))) is not None:
        found.append(await sources.day_of_refund(conn, refund_id))
    return sorted({day_of(at) for at in found if at is not None})


class AnalyticsRollups:
    """The handler; its MongoDB client is built on first use (`CommunityActivity`)."""

    def __init__(self, settings: Settings) -> None:
        self.activity = CommunityActivity(settings)

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        await self._refresh(conn, await days_touched(conn, envelope))

    async def many(
        self, conn: AsyncConnection, envelopes: list[Envelope]
    ) -> list[Exception | None]:
        """A batch of events (the queue's batch handler): the days they touch, each once."""
        days: set[date] = set()
        for envelope in envelopes:
            days.update(await days_touched(conn, envelope))
        await self._refresh(conn, sorted(days))
        return [None] * len(envelopes)

    async def _refresh(self, conn: AsyncConnection, days: list[date]) -> None:
        for day in days:
            await rollups.refresh_day(conn, day)
            # MongoDB away only logs: the financial rollups do not wait on it.
            await self.activity.write_day_or_log(conn, day)
