"""A batch of `analytics.billing` events of several types takes its days' locks in one order
(`rollups.refresh_day` locks a day until the commit): two batches that touch the same days
wait for one another instead of deadlocking (each type's events recomputed in a group of
their own took the days in per-group order: one batch D2 then D1, the other D1 then D2)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.modules.analytics import rollups
from commdesk_billing.queues.envelope import Envelope, new_envelope
from commdesk_billing.queues.routing import per_queue_batches

D1 = date(2026, 1, 1)
D2 = date(2026, 1, 2)


def _event(message_type: str, day: date) -> Envelope:
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return new_envelope(message_type, {"settlement_id": "s"}).model_copy(update={"occurred_at": at})


async def test_two_batches_over_the_same_days_do_not_deadlock(
    engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    singles = wiring.handlers(settings)
    dispatch = per_queue_batches(wiring.batch_handlers(singles))["analytics.billing"]
    refresh = rollups.refresh_day

    async def slow_refresh(conn: Any, day: date) -> None:
        await refresh(conn, day)
        await asyncio.sleep(0.5)  # both batches hold their first day now

    monkeypatch.setattr(rollups, "refresh_day", slow_refresh)

    async def batch(events: list[Envelope]) -> list[Exception | None]:
        async with engine.connect() as conn, conn.begin():
            return await dispatch(conn, events)

    try:
        results = await asyncio.gather(
            batch([_event("settlement.paid", D2), _event("settlement.failed", D1)]),
            batch([_event("settlement.paid", D1), _event("settlement.failed", D2)]),
            return_exceptions=True,
        )
    finally:
        for handler in {id(h): h for h in singles.values()}.values():
            closer = getattr(handler, "aclose", None)
            if closer is not None:
                await closer()
    assert results == [[None, None], [None, None]], results
