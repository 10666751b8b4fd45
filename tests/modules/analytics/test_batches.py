"""The `analytics.billing` queue is consumed in batches: the days a batch's events touch are
recomputed once each, after all of them (`AnalyticsRollups.many`), not once per event."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.modules.analytics.consumers import AnalyticsRollups
from commdesk_billing.modules.analytics.periods import day_of
from commdesk_billing.queues.envelope import new_envelope
from commdesk_billing.queues.routing import per_queue_batches


async def test_a_batch_recomputes_each_day_once(engine: AsyncEngine, settings: Settings) -> None:
    rollups = AnalyticsRollups(settings)
    envelopes = [new_envelope("settlement.paid", {"settlement_id": str(i)}) for i in range(5)]
    recomputes: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().startswith("DELETE FROM analytics_ledger_daily"):
            recomputes.append(statement)

    try:
        async with engine.connect() as conn:
            event.listen(conn.sync_connection, "before_cursor_execute", seen)
            async with conn.begin():
                outcomes = await rollups.many(conn, envelopes)
            stamped = (
                await conn.execute(
                    text("SELECT refreshed_at FROM analytics_days WHERE day = :d"),
                    {"d": day_of(datetime.now(UTC))},
                )
            ).scalar_one()
    finally:
        await rollups.activity.aclose()
    assert outcomes == [None] * 5
    assert len(recomputes) == 1  # five events of one day: one recompute
    assert stamped is not None


def test_every_route_of_a_batched_queue_has_a_batch_handler(settings: Settings) -> None:
    singles = wiring.handlers(settings)
    batched = per_queue_batches(wiring.batch_handlers(singles))
    assert "analytics.billing" in batched
    analytics = {t for q, t in wiring.ROUTES if q == "analytics.billing"}
    assert set(batched["analytics.billing"].by_type) == analytics  # type: ignore[attr-defined]
