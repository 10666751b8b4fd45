"""The relay is woken by its own process's commits; what other processes write it finds by
polling (`outbox.Relay.run`)."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.worker import Worker
from tests.queues.conftest import wait_for


async def _consumed_after(
    engine: AsyncEngine, settings: Settings, write_here: bool
) -> tuple[float, float]:
    """(seconds from the commit to the consumer, the relay's idle pause)."""
    seen: list[float] = []

    async def handler(conn: object, env: Envelope) -> None:
        seen.append(time.monotonic())

    async with Worker(settings, engine=engine, handlers={"notifications.billing": handler}):
        await asyncio.sleep(1.5)  # past its first rounds: the relay is waiting now
        written = time.monotonic()
        if write_here:
            await in_transaction(
                engine, lambda c: publish(c, "notifications.billing", "test.wake", {})
            )
        else:
            # As another process would: committed, but not through this process's
            # transaction boundary, so nothing here is told.
            async with engine.begin() as conn:
                await publish(conn, "notifications.billing", "test.wake", {})

        async def consumed() -> bool:
            return bool(seen)

        await wait_for(consumed, 30, "the message consumed")
    return seen[0] - written, settings.relay_idle_s


async def test_rows_committed_in_this_process_are_published_at_once(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    slow = qsettings.model_copy(update={"relay_idle_s": 20.0})
    took, idle = await _consumed_after(engine, slow, write_here=True)
    assert took < idle / 4, took


async def test_rows_written_elsewhere_are_found_by_polling(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    polling = qsettings.model_copy(update={"relay_idle_s": 1.0})
    took, idle = await _consumed_after(engine, polling, write_here=False)
    assert took < idle + 5, took
