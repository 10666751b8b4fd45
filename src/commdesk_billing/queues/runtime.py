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
import heapq
import os
import random
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, StatusCode, Tracer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Environment, Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.db.errors import DatabaseUnavailable
from commdesk_billing.errors import DomainError
from commdesk_billing.queues import inbox
from commdesk_billing.queues.envelope import Envelope, InvalidMessage, decode
from commdesk_billing.queues.topology import PERSISTENT, Names
from commdesk_billing.security import origin
from commdesk_billing.telemetry import context as trace_context
from commdesk_billing.telemetry import errors
from commdesk_billing.telemetry.metrics import (
    HANDLER_LATENCY,
    QUEUE_CONSUMED,
    QUEUE_DEAD_LETTERED,
    QUEUE_RETRIED,
)

log = structlog.get_logger(__name__)


class TwoPhase(ABC):
    """A handler that must ask another system first (Cashfree): `fetch` runs before the
    transaction opens, so no database connection waits on the network; `apply` runs in the
    transaction with the inbox row. A redelivered message may fetch again, and `apply`
    must stay idempotent on its own (it sees fresh data each time)."""

    @abstractmethod
    async def fetch(self, envelope: Envelope) -> object: ...

    @abstractmethod
    async def apply(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> None: ...


Handler = Callable[[AsyncConnection, Envelope], Awaitable[None]] | TwoPhase
# Many envelopes in one transaction; one outcome each: None (applied) or the DomainError /
# PermanentError that refused it. Anything raised fails the whole batch, whose messages are
# then handled one by one (with retries) by the queue's single handler.
BatchHandler = Callable[[AsyncConnection, list[Envelope]], Awaitable[list[Exception | None]]]


async def _release(message: AbstractIncomingMessage) -> None:
    """Give an unsettled message back to the broker for redelivery."""
    if message.processed:
        return
    with contextlib.suppress(Exception):
        await message.nack(requeue=True)


@dataclass(frozen=True)
class _Item:
    message: AbstractIncomingMessage
    envelope: Envelope
    done: asyncio.Future[None]


# A message published to the broker but not recorded in the inbox yet is "in flight" this
# long at most (`in_flight_s`): queued or being handled (a minute), then every retry of the
# ladder, each up to 1.5x its delay (±20 % jitter, and a TTL only expires at the head of its
# retry queue). Past that it was dead-lettered or lost.
HANDLING_ALLOWANCE_S = 60.0


def in_flight_s(settings: Settings) -> float:
    """How long a sent message may still be on its way to being consumed: the window in
    which a periodic job must not send the same command again (`outbox.send(...,
    unless_pending=True)`)."""
    delays = settings.retry_delays_s
    ladder = sum(
        delays[min(attempt - 1, len(delays) - 1)] for attempt in range(1, settings.max_attempts)
    )
    return HANDLING_ALLOWANCE_S + 1.5 * ladder


def _priority(queue: str) -> int:
    return 0 if queue in FIRST_QUEUES else 1


def _trace_header() -> dict[str, str]:
    """The current span's `traceparent`, so the next attempt continues this trace."""
    traceparent = trace_context.current_traceparent()
    return {"traceparent": traceparent} if traceparent else {}


# The queues whose messages move money a person is waiting for (a paid order's credits, a
# debit, a refund): when transactions queue for a slot, theirs go first, ahead of the
# follow-up work each of them announces (documents, analytics, notifications, events out,
# scoring), which is several times more messages and can wait.
FIRST_QUEUES = frozenset(
    {"payment.processing", "wallet.credit", "wallet.debit", "refund.processing"}
)


class Slots:
    """A semaphore whose waiters are served by priority (lower first), then in arrival
    order; but a waiter is overtaken by later arrivals at most `MAX_OVERTAKES` times in a
    row, then served.

    Strict priority alone starves: while the money path's queues have a backlog, their
    prefetch windows keep a money waiter queued at every hand-off, so the follow-up work
    (invoices, settlements, notifications, events out) would get no slot until the whole
    backlog had drained, however long that takes."""

    # Money first still: under contention the follow-up work gets at least one hand-off in
    # MAX_OVERTAKES + 1, and none while nothing of it waits.
    MAX_OVERTAKES = 8

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = 0
        # Hand-offs in a row to a waiter that arrived after the oldest one waiting.
        self._overtakes = 0

    async def acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        self._arrivals += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, self._arrivals, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            else:
                self._waiting = [w for w in self._waiting if w[2] is not waiter]
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, waiter = self._next()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to it
                return
        self._free += 1

    def _next(self) -> tuple[int, int, asyncio.Future[None]]:
        """The waiter to serve: the first by priority, unless the oldest waiter has been
        overtaken `MAX_OVERTAKES` times already (a scan: a few hundred waiters at most)."""
        first = self._waiting[0]
        oldest = min(self._waiting, key=lambda w: w[1])
        if oldest is first:
            self._overtakes = 0
        elif self._overtakes >= self.MAX_OVERTAKES:
            self._overtakes = 0
            self._waiting.remove(oldest)
            heapq.heapify(self._waiting)
            return oldest
        else:
            self._overtakes += 1
        return heapq.heappop(self._waiting)

    @contextlib.asynccontextmanager
    async def held(self, priority: int) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


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
        batch_handlers: dict[str, BatchHandler] | None = None,
        max_batch: int = 50,
        heal: Callable[[], Awaitable[None]] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.engine = engine
        # Tracing on: each message is handled in a consumer span (`handle_one`).
        self.tracer = tracer
        # Declares the topology again: called when a retry or dead letter could not be
        # published (its queue or exchange is gone), before the message is handed back.
        self.heal = heal
        self.batch_handlers = batch_handlers or {}
        self.max_batch = max_batch
        missing = set(self.batch_handlers) - set(handlers)
        if missing:
            raise ValueError(f"batch handlers need a single handler too: {sorted(missing)}")
        self._pending: dict[str, asyncio.Queue[_Item]] = {}
        self._batchers: list[asyncio.Task[None]] = []
        self.channel = channel
        self.names = names
        self.settings = settings
        self.handlers = handlers
        self._queues: list[tuple[AbstractQueue, str]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.started = False
        # Transactions at once, at most the pool's steady size. Every consumed queue may
        # have `consumer_prefetch` messages in hand (ten queues: a few hundred); without a
        # bound they all queue at the pool, whose overflow connections are opened and closed
        # again and again (a backend started each time), and past `db_pool_timeout_s` a
        # message fails with `DatabaseUnavailable` and takes the retry ladder although the
        # database is fine. Waiting here has no deadline: it is our own queue, not the
        # database's answer. The overflow stays for the relay and what handlers open. The
        # money path's queues (`FIRST_QUEUES`) are served first.
        self._db_slots = Slots(settings.db_pool_size)

    async def start(self) -> None:
        await self.channel.set_qos(prefetch_count=self.settings.consumer_prefetch)
        for queue in self.batch_handlers:
            self._pending[queue] = asyncio.Queue()
            self._batchers.append(asyncio.create_task(self._batch_loop(queue)))
        for queue in self.handlers:
            q = await self.channel.get_queue(self.names.work(queue), ensure=True)
            tag = await q.consume(self._deliver(queue))
            self._queues.append((q, tag))
        self.started = True

    def _deliver(self, queue: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            if self._closing:
                await message.nack(requeue=True)
                return
            self._in_flight += 1
            self._idle.clear()
            try:
                await self.handle(queue, message)
            except Exception as exc:
                # A publish to a retry/dead-letter queue or an ack failed (broker trouble, or
                # a broker that lost its queues): declare the topology again, then hand the
                # message back rather than hold its prefetch slot for ever.
                log.error("queue.message.unsettled", queue=queue, error=str(exc)[:300])
                if self.heal is not None:
                    with contextlib.suppress(Exception):
                        await self.heal()
                await _release(message)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        return on_message

    async def stop(self, timeout_s: float = 30.0, *, cancel: bool = True) -> None:
        """Stop taking work, then let in-flight messages finish (their acks included).
        `cancel=False` when the connection is down: there is no broker to tell."""
        self._closing = True
        if cancel and self._queues:
            # All at once and bounded as a whole: on a connection that drops meanwhile each
            # cancel would wait for the reconnect (ten queues one by one was ~50 s).
            results = await asyncio.gather(
                *(asyncio.wait_for(q.cancel(tag), timeout=5) for q, tag in self._queues),
                return_exceptions=True,
            )
            for exc in results:
                if isinstance(exc, BaseException):  # the channel may already be gone
                    log.info("queue.consumer.cancel_failed", error=str(exc)[:200])
        # Offline, a handler still running can only be waiting on the broker (a retry
        # publish, an ack): what it committed stays committed and the broker redelivers the
        # message to the next worker, whose inbox recognises it. So a short wait will do.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s if cancel else 5)
        for task in self._batchers:
            task.cancel()
        for task in self._batchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def handle(self, queue: str, message: AbstractIncomingMessage) -> None:
        try:
            envelope = decode(message.body)
        except InvalidMessage as exc:
            await self.dead_letter(
                queue, message.body, reason="invalid_message", detail=str(exc), attempts=0
            )
            await message.ack()
            QUEUE_CONSUMED.labels(queue, "invalid").inc()
            return
        if queue in self.batch_handlers:
            done = asyncio.get_running_loop().create_future()
            await self._pending[queue].put(_Item(message, envelope, done))
            await done  # resolved once the batch that carried it was acknowledged
            return
        await self.handle_one(queue, message, envelope)

    async def handle_one(
        self, queue: str, message: AbstractIncomingMessage, envelope: Envelope
    ) -> None:
        """The message in a consumer span, child of the publisher's (its `traceparent`
        header, else the envelope's); with tracing off, in the publisher's trace as it came."""
        header = (message.headers or {}).get("traceparent")
        traceparent = header if isinstance(header, str | bytes) else envelope.traceparent
        if self.tracer is None:
            with trace_context.remote_parent(traceparent):
                await self._handle_one(queue, message, envelope)
            return
        with self.tracer.start_as_current_span(
            f"{queue} process",
            context=trace_context.parent_context(traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.names.work(queue),
                "messaging.message.id": str(envelope.id),
                "commdesk.message.type": envelope.type,
                "commdesk.message.attempt": envelope.attempt,
            },
        ):
            await self._handle_one(queue, message, envelope)

    async def _handle_one(
        self, queue: str, message: AbstractIncomingMessage, envelope: Envelope
    ) -> None:
        started = time.perf_counter()
        handler = self.handlers[queue]
        fetched: object = None

        async def work(conn: AsyncConnection) -> bool:
            if not await inbox.claim(conn, envelope.id, queue, envelope.type):
                return False
            if isinstance(handler, TwoPhase):
                await handler.apply(conn, envelope, fetched)
            else:
                await handler(conn, envelope)
            return True

        try:
            if isinstance(handler, TwoPhase):
                fetched = await handler.fetch(envelope)
            # What the handler audits names the queue and the message as where it came from.
            with origin.bound(origin.consumer(queue, str(envelope.id))):
                async with self._db_slots.held(_priority(queue)):
                    applied = await in_transaction(self.engine, work)
        except (PermanentError, DomainError) as exc:
            await self._refused(queue, message, envelope, exc)
            return
        except Exception as exc:
            span = trace.get_current_span()
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR)
            # A bug or an outage we did not expect: to Sentry, in this message's trace. The
            # database being away is an outage the metrics and alerts already tell.
            if not isinstance(exc, DatabaseUnavailable):
                errors.capture(exc)
            await self.retry_or_dead_letter(queue, envelope, exc)
            await message.ack()
            QUEUE_CONSUMED.labels(queue, "retried").inc()
            return
        self._maybe_crash(queue)
        await message.ack()
        HANDLER_LATENCY.labels(queue).observe(time.perf_counter() - started)
        QUEUE_CONSUMED.labels(queue, "applied" if applied else "duplicate").inc()

    async def _refused(
        self, queue: str, message: AbstractIncomingMessage, envelope: Envelope, exc: Exception
    ) -> None:
        code = getattr(exc, "code", "permanent_error")
        await self.dead_letter(
            queue, message.body, reason=code, detail=str(exc), attempts=envelope.attempt
        )
        await message.ack()
        QUEUE_CONSUMED.labels(queue, "dead_lettered").inc()

    async def _batch_loop(self, queue: str) -> None:
        pending = self._pending[queue]
        while True:
            items = [await pending.get()]
            # No lingering: under load the prefetch window has already filled the queue.
            while len(items) < self.max_batch and not pending.empty():
                items.append(pending.get_nowait())
            try:
                await self.handle_batch(queue, items)
            except Exception as exc:  # never lose the loop
                log.error("queue.batch.failed", queue=queue, error=str(exc)[:300])
            finally:
                for item in items:
                    # Anything not acknowledged goes back to the broker (a no-op if its
                    # channel is gone: the broker has requeued it already).
                    await _release(item.message)
                    if not item.done.done():
                        item.done.set_result(None)

    async def handle_batch(self, queue: str, items: list[_Item]) -> None:
        """A batch has many parents: with tracing on, its consumer span links to each
        message's publisher span (and a message that falls back to `handle_one` gets a span
        of its own, child of its publisher)."""
        if self.tracer is None:
            await self._handle_batch(queue, items)
            return
        links = []
        for item in items:
            header = (item.message.headers or {}).get("traceparent")
            remote = trace_context.parse(
                header if isinstance(header, str | bytes) else item.envelope.traceparent
            )
            if remote is not None:
                links.append(Link(remote))
        with self.tracer.start_as_current_span(
            f"{queue} process",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.names.work(queue),
                "messaging.batch.message_count": len(items),
            },
        ):
            await self._handle_batch(queue, items)

    async def _handle_batch(self, queue: str, items: list[_Item]) -> None:
        started = time.perf_counter()
        handler = self.batch_handlers[queue]

        async def work(conn: AsyncConnection) -> list[Exception | str | None]:
            envelopes = [i.envelope for i in items]
            # Claim first: the insert waits on a concurrent worker holding the same message,
            # so a message is handed to the handler by one batch only.
            claimed = await inbox.claim_many(conn, envelopes, queue)
            fresh: list[Envelope] = []
            for e in envelopes:
                if e.id in claimed:
                    fresh.append(e)
                    claimed.discard(e.id)  # a second copy in this batch is a duplicate
            outcomes = dict(
                zip((e.id for e in fresh), await handler(conn, fresh) if fresh else [], strict=True)
            )
            refused = [mid for mid, o in outcomes.items() if o is not None]
            if refused:
                # A refused message goes to the DLQ; replaying it later must run again.
                await inbox.unclaim(conn, refused, queue)
            results: list[Exception | str | None] = []
            for e in envelopes:
                if e.id in outcomes:
                    results.append(outcomes.pop(e.id))
                else:
                    results.append("duplicate")
            return results

        try:
            async with self._db_slots.held(_priority(queue)):
                results = await in_transaction(self.engine, work)
        except Exception as exc:
            # Something beyond a per-message refusal (the database, a bug): each message gets
            # the single path, with its own retries and dead-lettering.
            log.warning("queue.batch.fallback", queue=queue, size=len(items), error=str(exc)[:200])
            for item in items:
                try:
                    await self.handle_one(queue, item.message, item.envelope)
                except Exception as one_exc:
                    log.error("queue.message.unsettled", queue=queue, error=str(one_exc)[:300])
            return
        self._maybe_crash(queue)
        for item, result in zip(items, results, strict=True):
            # Settled one by one: a failure here (a channel lost since delivery) must not
            # leave the rest of the batch hanging; `_batch_loop` releases what is left.
            try:
                if isinstance(result, Exception):
                    await self._refused(queue, item.message, item.envelope, result)
                    continue
                await item.message.ack()
            except Exception as exc:
                log.warning("queue.message.ack_failed", queue=queue, error=str(exc)[:200])
                continue
            QUEUE_CONSUMED.labels(queue, "duplicate" if result == "duplicate" else "applied").inc()
        HANDLER_LATENCY.labels(queue).observe(time.perf_counter() - started)

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
        # The database being unavailable says nothing about the message: it waits at the
        # last tier for as long as the outage lasts instead of using up its attempts and
        # landing in the DLQ, where a credit after a capture would wait for a person.
        unavailable = isinstance(exc, DatabaseUnavailable)
        if envelope.attempt >= self.settings.max_attempts and not unavailable:
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
        again = envelope
        if not unavailable or envelope.attempt < self.settings.max_attempts:
            again = envelope.next_attempt()
        # The shared tier's exchange fans the message into the tier's queue; its routing key,
        # the work queue's name, is where RabbitMQ dead-letters it back when the TTL is up.
        exchange = await self.channel.get_exchange(self.names.retry(tier), ensure=False)
        await exchange.publish(
            aio_pika.Message(
                again.encode(),
                message_id=str(envelope.id),
                content_type="application/json",
                delivery_mode=PERSISTENT,
                expiration=delay,
                headers={"x-last-error": detail, **_trace_header()},
            ),
            routing_key=self.names.work(queue),
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
