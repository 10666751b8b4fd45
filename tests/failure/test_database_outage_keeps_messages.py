"""A database outage longer than a message's attempts: the message waits at the last retry
tier for as long as it lasts, instead of being dead-lettered as `attempts_exhausted`."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.db.errors import DatabaseUnavailable
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.topology import Names
from commdesk_billing.queues.worker import Worker
from tests.harness.faults import Recorder
from tests.queues.conftest import queue_depth, wait_for
from tests.queues.test_backbone import _count_effects, _effects, _mark

pytestmark = pytest.mark.slow


async def test_an_outage_past_the_last_attempt_keeps_the_message(
    engine: AsyncEngine, qsettings: Settings, faults: Recorder
) -> None:
    marker = uuid.uuid4().hex
    seen: list[int] = []
    outage = qsettings.max_attempts + 2  # deliveries that find the database unavailable

    async def handler(conn: AsyncConnection, env: Envelope) -> None:
        seen.append(env.attempt)
        if len(seen) <= outage:
            raise DatabaseUnavailable("pool_timeout")
        await _mark(conn, marker)

    async with Worker(qsettings, engine=engine, handlers={"analytics.billing": handler}):
        await in_transaction(
            engine, lambda c: publish(c, "analytics.billing", "test.outage", {"m": marker})
        )
        await wait_for(lambda: _effects(engine, marker, 1), 60, "the message after the outage")
    names = Names(qsettings.rabbitmq_queue_prefix, len(qsettings.retry_delays_s))
    effects = await _count_effects(engine, marker)
    dead = await queue_depth(qsettings, names.dlq("analytics.billing"))
    faults.record(
        "the database unavailable for longer than a message's attempts",
        injected=outage,
        what=f"{outage} deliveries finding it unavailable (max attempts {qsettings.max_attempts})",
        lost=max(0, 1 - effects) + dead,
        twice=max(0, effects - 1),
        outcome="the message waits at the last retry tier, never dead-lettered",
    )
    assert effects == 1
    assert dead == 0
    last = qsettings.max_attempts
    # Attempts count up to the last one, then stay there while the outage lasts.
    assert seen == [*range(1, last + 1), *([last] * (outage + 1 - last))]
