"""A broker that forgets its queues: the worker declares its topology again and nothing is
lost or applied twice (the vhost's queues and retry exchanges are deleted under a running
worker, as a broker restored without its data would have them)."""

from __future__ import annotations

import uuid

import aio_pika
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.topology import Names, delete
from commdesk_billing.queues.worker import Worker
from tests.harness.faults import Recorder
from tests.queues.conftest import queue_depth, wait_for
from tests.queues.test_backbone import _count_effects, _effects, _mark

pytestmark = pytest.mark.slow


async def _forget_everything(settings: Settings, names: Names) -> None:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        await delete(await connection.channel(), names)


async def test_a_broker_that_lost_its_queues_gets_them_back_and_loses_nothing(
    engine: AsyncEngine, qsettings: Settings, faults: Recorder
) -> None:
    names = Names(qsettings.rabbitmq_queue_prefix, len(qsettings.retry_delays_s))
    before, after = uuid.uuid4().hex, uuid.uuid4().hex
    attempts: dict[str, list[int]] = {before: [], after: []}

    async def flaky(conn: AsyncConnection, env: Envelope) -> None:
        marker = str(env.payload["marker"])
        attempts[marker].append(env.attempt)
        # The message after the loss fails on its first attempt, every time it is delivered
        # as such: it only takes effect once a retry went through a retry tier, so the tiers
        # must be back too.
        if marker == after and env.attempt == 1:
            raise ConnectionError("downstream hiccup")
        await _mark(conn, marker)

    async def send(marker: str) -> None:
        await in_transaction(
            engine, lambda c: publish(c, "analytics.billing", "test.flaky", {"marker": marker})
        )

    async with Worker(qsettings, engine=engine, handlers={"analytics.billing": flaky}):
        await send(before)
        await wait_for(lambda: _effects(engine, before, 1), 30, "the message before the loss")
        await _forget_everything(qsettings, names)
        await send(after)
        await wait_for(lambda: _effects(engine, after, 1), 60, "the message after the loss")
        # Everything is declared again: the work queue, its DLQ and every shared retry tier.
        for name in [*names.all("analytics.billing"), *names.tiers_all()]:
            assert await queue_depth(qsettings, name) == 0, name
    effects = [await _count_effects(engine, m) for m in (before, after)]
    faults.record(
        "broker forgets every queue, dead-letter queue and retry tier under a running worker",
        injected=1,
        what="the vhost's 25 queues and retry exchanges deleted; a message before and after, "
        "the one after failing until a retry tier is back",
        lost=sum(1 for n in effects if n == 0),
        twice=sum(max(0, n - 1) for n in effects),
        outcome="the worker declares its topology again; the retry goes through a tier",
    )
    assert effects == [1, 1]
    assert attempts[before] == [1]
    # A delivery whose retry could not be published is handed back as it was (attempt 1
    # again) while the worker declares the topology; then a retry goes through a tier.
    assert attempts[after][-1] == 2 and set(attempts[after][:-1]) == {1}


async def test_a_deployment_declares_29_queues(engine: AsyncEngine, qsettings: Settings) -> None:
    """Twelve work queues with a dead-letter queue each, and five retry tiers shared by all."""
    from urllib.parse import unquote, urlsplit

    from tests.harness.broker import list_queues

    five = qsettings.model_copy(update={"retry_delays_s": (1, 5, 30, 120, 600)})
    async with Worker(five, engine=engine, handlers={}, relay=False):
        vhost = unquote(urlsplit(five.rabbitmq_url).path.lstrip("/"))
        ours = [n for n in await list_queues(vhost) if n.startswith(five.rabbitmq_queue_prefix)]
    assert len(ours) == 29, sorted(ours)
    await _forget_everything(five, Names(five.rabbitmq_queue_prefix, 5))
