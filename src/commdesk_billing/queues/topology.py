"""RabbitMQ topology (DESIGN §6), declared idempotently at start-up.

For each work queue `q`:
  q            durable quorum queue, where handlers consume
  q.retry.N    one per backoff tier (quorum, at-least-once dead-lettering): messages wait
               out a per-message TTL, then RabbitMQ dead-letters them back to `q` (no
               delayed-message plugin needed). TTLs expire at the head of a queue, so with
               +/-20 % jitter a message can wait behind a longer one of its own tier: at most
               1.5x its delay.
  q.dlq        durable quorum queue for messages that failed for good, with the reason in
               their headers; replayable with `commdesk-billing dlq replay`
Everything is published through the default exchange, routed by queue name.
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
    "notifications.billing",
    "settlements.processing",
)


class Names:
    def __init__(self, prefix: str, tiers: int) -> None:
        self.prefix = prefix
        self.tiers = tiers

    def work(self, queue: str) -> str:
        return f"{self.prefix}{queue}"

    def retry(self, queue: str, tier: int) -> str:
        return f"{self.prefix}{queue}.retry.{tier}"

    def dlq(self, queue: str) -> str:
        return f"{self.prefix}{queue}.dlq"

    def all(self, queue: str) -> list[str]:
        return [
            self.work(queue),
            self.dlq(queue),
            *(self.retry(queue, t) for t in range(self.tiers)),
        ]


async def declare(channel: AbstractChannel, names: Names, queues: tuple[str, ...] = QUEUES) -> None:
    quorum: dict[str, Any] = {"x-queue-type": "quorum"}
    for queue in queues:
        await channel.declare_queue(names.work(queue), durable=True, arguments=quorum)
        await channel.declare_queue(names.dlq(queue), durable=True, arguments=quorum)
        for tier in range(names.tiers):
            # Quorum too, so that dead-lettering back to the work queue is at-least-once
            # (a classic queue's is at-most-once); that mode needs reject-publish overflow.
            await channel.declare_queue(
                names.retry(queue, tier),
                durable=True,
                arguments={
                    **quorum,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": names.work(queue),
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )


async def delete(channel: AbstractChannel, names: Names, queues: tuple[str, ...] = QUEUES) -> None:
    """Remove every queue of this prefix (test clean-up)."""
    for queue in queues:
        for name in names.all(queue):
            await channel.queue_delete(name)


PERSISTENT = aio_pika.DeliveryMode.PERSISTENT
