"""RabbitMQ topology (DESIGN §6), declared idempotently at start-up.

For each work queue `q`:
  q            durable quorum queue, where handlers consume
  q.dlq        durable quorum queue for messages that failed for good, with the reason in
               their headers; replayable with `commdesk-billing dlq replay`
Shared by every work queue, one per backoff tier N:
  retry.N      a fanout exchange and its quorum queue. A message to retry is published there
               with its work queue's name as routing key; it waits out a per-message TTL, then
               RabbitMQ dead-letters it, at least once, through the default exchange with that
               same routing key, back to its work queue (no delayed-message plugin needed).
               TTLs expire at the head of a queue, so with +/-20 % jitter a message can wait
               behind a longer one of its tier: at most 1.5x its delay.
So a deployment declares 2 queues per work queue plus one per tier (29 with today's 12 work
queues and 5 tiers), not 2 + tiers per work queue (84).
Work and dead-letter queues are reached through the default exchange, routed by name.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

QUEUES = (
    "payment.processing",
    "wallet.credit",
    "wallet.debit",
    "refund.processing",
    "analytics.billing",
    "fraud.detection",
    "webhook.processing",
    "invoice.generate",
    # Drawing and storing tax documents' PDFs: apart from issuing them, so a backlog of
    # drawings never delays the numbering that follows each purchase.
    "invoice.render",
    "notifications.billing",
    "settlements.processing",
    "webhooks.outbound",
)


class Names:
    def __init__(self, prefix: str, tiers: int) -> None:
        self.prefix = prefix
        self.tiers = tiers

    def work(self, queue: str) -> str:
        return f"{self.prefix}{queue}"

    def retry(self, tier: int) -> str:
        """Tier `tier`'s queue and its exchange (RabbitMQ keeps the two kinds of name apart)."""
        return f"{self.prefix}retry.{tier}"

    def dlq(self, queue: str) -> str:
        return f"{self.prefix}{queue}.dlq"

    def all(self, queue: str) -> list[str]:
        """A work queue's own queues (the retry tiers are shared: `tiers_all`)."""
        return [self.work(queue), self.dlq(queue)]

    def tiers_all(self) -> list[str]:
        return [self.retry(t) for t in range(self.tiers)]


async def declare(channel: AbstractChannel, names: Names, queues: tuple[str, ...] = QUEUES) -> None:
    quorum: dict[str, Any] = {"x-queue-type": "quorum"}
    for queue in queues:
        await channel.declare_queue(names.work(queue), durable=True, arguments=quorum)
        await channel.declare_queue(names.dlq(queue), durable=True, arguments=quorum)
    for tier in range(names.tiers):
        exchange = await channel.declare_exchange(
            names.retry(tier), aio_pika.ExchangeType.FANOUT, durable=True
        )
        # Quorum too, so that dead-lettering back to the work queue is at-least-once (a
        # classic queue's is at-most-once); that mode needs reject-publish overflow. No
        # x-dead-letter-routing-key: an expired message keeps its own, its work queue's name.
        retry = await channel.declare_queue(
            names.retry(tier),
            durable=True,
            arguments={
                **quorum,
                "x-dead-letter-exchange": "",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        await retry.bind(exchange)


async def delete(channel: AbstractChannel, names: Names, queues: tuple[str, ...] = QUEUES) -> None:
    """Remove every queue and exchange of this prefix (test clean-up)."""
    for queue in queues:
        for name in names.all(queue):
            await channel.queue_delete(name)
    for name in names.tiers_all():
        await channel.queue_delete(name)
        await channel.exchange_delete(name)


PERSISTENT = aio_pika.DeliveryMode.PERSISTENT
