"""Consumer runtime: handlers, inbox, retries, dead letters, graceful shutdown.

For each delivery:
  1. the body must be a valid envelope, else it goes to `<queue>.dlq` at once (reason in the
     headers) and is acknowledged;
  2. the handler runs in one transaction together with the inbox row for the message id; a
     message seen before is acknowledged with no effect;
  3. acknowledged only after the commit. A crash before the ack means redelivery, which the
     inbox turns into a no-op;
  4. a transient failure (anything unexpected) is re-published to the next retry tier with
     its attempt count raised, then acknowledged; a permanent failure (`PermanentError`, or a
     business refusal, `DomainError`) or the last attempt goes to the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Environment, Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import DomainError
from commdesk_billing.queues import inbox
from commdesk_billing.queues.envelope import Envelope, InvalidMessage, decode
from commdesk_billing.queues.topology import PERSISTENT, Names
from commdesk_billing.telemetry.metrics import (
    HANDLER_LATENCY,
    QUEUE_CONSUMED,
    QUEUE_DEAD_LETTERED,
    QUEUE_RETRIED,
)

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncConnection, Envelope], Awaitable[None]]


class PermanentError(Exception):
    """Retrying cannot help (bad payload, refused by the business rules)."""


class Consumers:
    def __init__(
        self,
        engine: AsyncEngine,
        channel: AbstractChannel,
        names: Names,
        settings: Settings,
        handlers: dict[str, Handler],
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.names = names
        self.settings = settings
        self.handlers = handlers
        self._queues: list[tuple[AbstractQueue, str]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    async def start(self) -> None:
        await self.channel.set_qos(prefetch_count=self.settings.consumer_prefetch)
        for queue in self.handlers:
            q = await self.channel.get_queue(self.names.work(queue), ensure=True)
            tag = await q.consume(self._deliver(queue))
            self._queues.append((q, tag))

    def _deliver(self, queue: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            if self._closing:
                await message.nack(requeue=True)
                return
            self._in_flight += 1
            self._idle.clear()
            try:
                await self.handle(queue, message)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        return on_message

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking work, then let in-flight messages finish (their acks included)."""
        self._closing = True
        for q, tag in self._queues:
            try:
                await q.cancel(tag)
            except Exception as exc:  # the channel may already be gone
                log.info("queue.consumer.cancel_failed", error=str(exc)[:200])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)

    async def handle(self, queue: str, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        try:
            envelope = decode(message.body)
        except InvalidMessage as exc:
            await self.dead_letter(
                queue, message.body, reason="invalid_message", detail=str(exc), attempts=0
            )
            await message.ack()
            QUEUE_CONSUMED.labels(queue, "invalid").inc()
            return
        handler = self.handlers[queue]

        async def work(conn: AsyncConnection) -> bool:
            if not await inbox.claim(conn, envelope.id, queue, envelope.type):
                return False
            await handler(conn, envelope)
            return True

        try:
            applied = await in_transaction(self.engine, work)
        except (PermanentError, DomainError) as exc:
            code = getattr(exc, "code", "permanent_error")
            await self.dead_letter(
                queue, message.body, reason=code, detail=str(exc), attempts=envelope.attempt
            )
            await message.ack()
            QUEUE_CONSUMED.labels(queue, "dead_lettered").inc()
            return
        except Exception as exc:
            await self.retry_or_dead_letter(queue, envelope, exc)
            await message.ack()
            QUEUE_CONSUMED.labels(queue, "retried").inc()
            return
        self._maybe_crash(queue)
        await message.ack()
        HANDLER_LATENCY.labels(queue).observe(time.perf_counter() - started)
        QUEUE_CONSUMED.labels(queue, "applied" if applied else "duplicate").inc()

    def _maybe_crash(self, queue: str) -> None:
        # Failure-test hook (refused in production by Settings): die between commit and ack.
        if (
            self.settings.fault_crash_after_commit == queue
            and self.settings.env is not Environment.production
        ):
            log.warning("queue.fault.crash_after_commit", queue=queue)
            os.kill(os.getpid(), signal.SIGKILL)

    async def retry_or_dead_letter(
        self, queue: str, envelope: Envelope, exc: BaseException
    ) -> None:
        detail = f"{type(exc).__name__}: {exc}"[:500]
        if envelope.attempt >= self.settings.max_attempts:
            await self.dead_letter(
                queue,
                envelope.encode(),
                reason="attempts_exhausted",
                detail=detail,
                attempts=envelope.attempt,
            )
            return
        delays = self.settings.retry_delays_s
        tier = min(envelope.attempt - 1, len(delays) - 1)
        delay = delays[tier] * random.uniform(0.8, 1.2)
        await self.channel.default_exchange.publish(
            aio_pika.Message(
                envelope.next_attempt().encode(),
                message_id=str(envelope.id),
                content_type="application/json",
                delivery_mode=PERSISTENT,
                expiration=delay,
                headers={"x-last-error": detail},
            ),
            routing_key=self.names.retry(queue, tier),
            mandatory=True,
        )
        QUEUE_RETRIED.labels(queue).inc()
        log.warning(
            "queue.message.retry",
            queue=queue,
            message_id=str(envelope.id),
            attempt=envelope.attempt,
            delay_s=round(delay, 2),
            error=detail,
        )

    async def dead_letter(
        self, queue: str, body: bytes, *, reason: str, detail: str, attempts: int
    ) -> None:
        await self.channel.default_exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=PERSISTENT,
                headers={
                    "x-reason": reason,
                    "x-detail": detail[:1000],
                    "x-original-queue": queue,
                    "x-attempts": attempts,
                    "x-dead-lettered-at": datetime.now(UTC).isoformat(),
                },
            ),
            routing_key=self.names.dlq(queue),
            mandatory=True,
        )
        QUEUE_DEAD_LETTERED.labels(queue, reason).inc()
        log.error("queue.message.dead_lettered", queue=queue, reason=reason, detail=detail[:300])
