"""Queue fixtures: real RabbitMQ, a queue-name prefix of the test's own, cleaned up after."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.topology import Names, delete
from commdesk_billing.telemetry.metrics import QUEUE_CONSUMED


@pytest.fixture
async def qsettings(settings: Settings) -> AsyncIterator[Settings]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    s = settings.model_copy(
        update={
            "rabbitmq_queue_prefix": prefix,
            "retry_delays_s": (0.2, 0.4, 0.8),
            "max_attempts": 3,
            "relay_idle_s": 0.05,
            "consumer_prefetch": 32,
        }
    )
    yield s
    names = Names(prefix, len(s.retry_delays_s))
    for _ in range(30):  # the broker may be restarting after an outage test
        try:
            connection = await aio_pika.connect(s.rabbitmq_url)
            break
        except Exception:
            await asyncio.sleep(1)
    else:
        return
    async with connection:
        await delete(await connection.channel(), names)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def queue_depth(settings: Settings, name: str) -> int:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(name, passive=True)
        return int(q.declaration_result.message_count or 0)


async def debits_via_outbox(
    engine: AsyncEngine, wallets: list[uuid.UUID], count: int, tag: str, per_tx: int = 500
) -> None:
    """`count` wallet.debit events of 1 credit, round-robin over `wallets`, via the outbox."""
    for start in range(0, count, per_tx):

        async def work(conn: AsyncConnection, start: int = start) -> None:
            for i in range(start, min(start + per_tx, count)):
                await publish(
                    conn,
                    "wallet.debit",
                    "wallet.debit.requested",
                    {
                        "wallet_id": str(wallets[i % len(wallets)]),
                        "credits": 1,
                        "reason": f"event {tag}",
                        "idempotency_key": f"{tag}:{i}",
                    },
                )

        await in_transaction(engine, work)


async def applied(engine: AsyncEngine, tag: str) -> int:
    return int(
        await scalar(
            engine, "SELECT count(*) FROM wallet_transactions WHERE source = :s", s=f"event {tag}"
        )
    )


def duplicates_seen() -> float:
    return QUEUE_CONSUMED.labels("wallet.debit", "duplicate")._value.get()  # type: ignore[attr-defined]


async def applied_at_least(engine: AsyncEngine, tag: str, n: int) -> bool:
    return await applied(engine, tag) >= n


async def depth_is(settings: Settings, name: str, n: int) -> bool:
    return await queue_depth(settings, name) == n
