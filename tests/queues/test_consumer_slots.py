"""More messages in hand than the pool has connections: they wait for a transaction slot in
the worker, not at the pool, so none times out there and takes the retry ladder while the
database is fine (`runtime.Consumers._db_slots`)."""

from __future__ import annotations

import asyncio
import uuid

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.worker import Worker
from tests.queues.conftest import wait_for

QUEUE = "notifications.billing"


def _retried() -> float:
    return REGISTRY.get_sample_value("billing_queue_retried_total", {"queue": QUEUE}) or 0.0


async def test_a_burst_waits_for_slots_not_for_the_pool(qsettings: Settings) -> None:
    small = qsettings.model_copy(
        update={"db_pool_size": 2, "db_max_overflow": 2, "db_pool_timeout_s": 0.5}
    )
    engine = make_engine(small)
    attempts: dict[uuid.UUID, list[int]] = {}
    marker = uuid.uuid4().hex

    async def slow(conn: AsyncConnection, env: Envelope) -> None:
        if env.payload.get("marker") != marker:
            return  # another test's row, relayed by this worker
        attempts.setdefault(env.id, []).append(env.attempt)
        # Holds its connection as a handler doing real work would.
        await conn.execute(text("SELECT pg_sleep(0.5)"))

    async def produce(conn: AsyncConnection) -> None:
        for _ in range(12):
            await publish(conn, QUEUE, "test.slow", {"marker": marker})

    before = _retried()
    try:
        async with Worker(small, engine=engine, handlers={QUEUE: slow}):
            await in_transaction(engine, produce)

            async def all_applied() -> bool:
                return len(attempts) == 12

            await wait_for(all_applied, 60, "twelve messages applied")
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    assert all(seen == [1] for seen in attempts.values()), attempts
    assert _retried() == before
