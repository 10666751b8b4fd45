"""Operator views and actions: queue status and the dead-letter queues."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.queues.envelope import InvalidMessage, decode
from commdesk_billing.queues.outbox import backlog
from commdesk_billing.queues.topology import PERSISTENT, QUEUES, Names
from commdesk_billing.queues.worker import connect, names_for


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    ready: int
    consumers: int
    dead_letters: int


@dataclass(frozen=True)
class TierStatus:
    """A shared retry tier: messages of any work queue waiting out this backoff."""

    tier: int
    delay_s: float
    waiting: int


async def _count(channel: AbstractChannel, name: str) -> tuple[int, int]:
    q = await channel.declare_queue(name, passive=True)
    result = q.declaration_result
    return int(result.message_count or 0), int(result.consumer_count or 0)


async def broker_status(settings: Settings) -> tuple[list[QueueStatus], list[TierStatus]]:
    """What RabbitMQ says of each work queue and each shared retry tier."""
    names = names_for(settings)
    rows: list[QueueStatus] = []
    tiers: list[TierStatus] = []
    connection = await connect(settings, attempts=1)
    async with connection:
        for queue in QUEUES:
            channel = await connection.channel()
            try:
                ready, consumers = await _count(channel, names.work(queue))
                dead, _ = await _count(channel, names.dlq(queue))
                rows.append(QueueStatus(queue, ready, consumers, dead))
            except aio_pika.exceptions.ChannelClosed:
                rows.append(QueueStatus(queue, -1, 0, -1))  # not declared yet
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()
        for tier, delay in enumerate(settings.retry_delays_s):
            channel = await connection.channel()
            try:
                tiers.append(TierStatus(tier, delay, (await _count(channel, names.retry(tier)))[0]))
            except aio_pika.exceptions.ChannelClosed:
                tiers.append(TierStatus(tier, delay, -1))
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()
    return rows, tiers


async def status(settings: Settings, engine: AsyncEngine) -> dict[str, Any]:
    """Everything `queues status` shows: the outbox backlog first (it needs no broker)."""
    unsent, oldest = await backlog(engine)
    rows, tiers = await broker_status(settings)
    return {
        "queues": rows,
        "retry_tiers": tiers,
        "outbox_unsent": unsent,
        "outbox_oldest_unsent_s": oldest,
    }


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    type: str
    reason: str
    detail: str
    attempts: int
    dead_lettered_at: str
    body: str


def _describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    try:
        env = decode(message.body)
        message_id, mtype = str(env.id), env.type
    except InvalidMessage:
        message_id, mtype = "-", "(not an envelope)"
    return DeadLetter(
        message_id=message_id,
        type=mtype,
        reason=str(headers.get("x-reason", "")),
        detail=str(headers.get("x-detail", "")),
        attempts=int(str(headers.get("x-attempts", 0) or 0)),
        dead_lettered_at=str(headers.get("x-dead-lettered-at", "")),
        body=message.body.decode("utf-8", errors="replace"),
    )


async def _drain(channel: AbstractChannel, name: str, limit: int) -> list[AbstractIncomingMessage]:
    """Take up to `limit` messages without acknowledging them: closing the channel puts
    every one not explicitly acknowledged back."""
    queue = await channel.get_queue(name, ensure=True)
    taken: list[AbstractIncomingMessage] = []
    while len(taken) < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        taken.append(message)
    return taken


def _check(queue: str) -> None:
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; one of: {', '.join(QUEUES)}")


async def dlq_list(settings: Settings, queue: str, limit: int = 100) -> list[DeadLetter]:
    _check(queue)
    connection = await connect(settings, attempts=1)
    async with connection:
        channel = await connection.channel()
        messages = await _drain(channel, names_for(settings).dlq(queue), limit)
        return [_describe(m) for m in messages]  # the channel closes: all go back


async def dlq_replay(
    settings: Settings, queue: str, message_id: str | None, limit: int = 10_000
) -> tuple[int, int]:
    """Send dead letters (all, or the one with `message_id`) back to their work queue with a
    fresh attempt count. Returns (replayed, skipped); bodies that are not envelopes stay."""
    _check(queue)
    names: Names = names_for(settings)
    replayed = skipped = 0
    connection = await connect(settings, attempts=1)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        for message in await _drain(channel, names.dlq(queue), limit):
            try:
                env = decode(message.body)
            except InvalidMessage:
                skipped += 1
                continue
            if message_id is not None and str(env.id) != message_id:
                continue
            fresh = env.model_copy(update={"attempt": 1})
            await channel.default_exchange.publish(
                aio_pika.Message(
                    fresh.encode(),
                    message_id=str(env.id),
                    content_type="application/json",
                    delivery_mode=PERSISTENT,
                    headers={"x-replayed-from-dlq": "true"},
                ),
                routing_key=names.work(queue),
                mandatory=True,
            )
            # Acknowledged only after the broker confirmed the copy: a crash in between
            # leaves a duplicate, which the consumer's inbox ignores.
            await message.ack()
            replayed += 1
    return replayed, skipped


async def dlq_depth(settings: Settings, queue: str) -> int:
    """How many dead letters QUEUE holds now (what an audit entry says before and after)."""
    _check(queue)
    connection = await connect(settings, attempts=1)
    async with connection:
        channel = await connection.channel()
        return (await _count(channel, names_for(settings).dlq(queue)))[0]


async def dlq_purge(settings: Settings, queue: str) -> int:
    _check(queue)
    connection = await connect(settings, attempts=1)
    async with connection:
        channel = await connection.channel()
        q = await channel.get_queue(names_for(settings).dlq(queue), ensure=True)
        result = await q.purge()
        return int(result.message_count or 0)
