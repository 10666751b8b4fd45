"""Transactional outbox: the only way domain code announces anything.

`publish(conn, …)` writes a row in the caller's transaction: the event exists if and only if
the state change it announces committed. The relay publishes rows with publisher confirms
and marks them sent; a crash anywhere in between re-sends (consumers are idempotent), never
loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, overload

import aio_pika
import orjson
import structlog
from aio_pika.abc import AbstractChannel
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction, on_driver
from commdesk_billing.db.sql import sql
from commdesk_billing.queues import routing
from commdesk_billing.queues.envelope import Envelope, new_envelope
from commdesk_billing.queues.topology import PERSISTENT, QUEUES, Names
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry import context as trace_context
from commdesk_billing.telemetry.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    QUEUE_PUBLISHED,
)

log = structlog.get_logger(__name__)

PUBLISH_TIMEOUT_S = 30.0


class _Written:
    """Rows were written to the outbox by a transaction of this process that committed
    (`aftercommit` calls `inc` then): wakes this process's relays at once, instead of at
    their next poll. A worker's consumers so have their follow-up messages published as soon
    as they commit them; rows other processes write (the API's) are found by polling."""

    def __init__(self) -> None:
        self.relays: set[asyncio.Event] = set()

    def inc(self, amount: float = 1, exemplar: Any = None) -> None:
        for wake in self.relays:
            wake.set()


WRITTEN = _Written()


async def publish(
    conn: AsyncConnection,
    queue: str,
    message_type: str,
    payload: dict[str, Any],
    *,
    deliver_at: datetime | None = None,
    correlation_id: str | None = None,
) -> Envelope:
    """Announce an event in the caller's transaction. `deliver_at` delays it (a delayed job)."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    envelope = new_envelope(message_type, payload, correlation_id=correlation_id)
    await conn.execute(
        sql("""
        INSERT INTO outbox (message_id, queue, message_type, body, available_at)
        VALUES (:id, :queue, :type, :body, coalesce(CAST(:at AS timestamptz), now()))"""),
        {
            "id": envelope.id,
            "queue": queue,
            "type": message_type,
            "body": envelope.model_dump_json(),
            "at": deliver_at,
        },
    )
    if deliver_at is None:
        aftercommit.count(conn, WRITTEN)
    return envelope


def command(
    queue: str,
    message_type: str,
    payload: dict[str, Any],
    *,
    correlation_id: str | None = None,
) -> Envelope:
    """The envelope `send` would write for a command, refused as `send` refuses it, for a
    caller that writes the row itself, inside a statement of its own that also writes the
    state the command is about (one statement: both or neither). The row: `message_id`
    the envelope's id, `queue`, `message_type`, `body` its `model_dump_json()`,
    `available_at` now."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    _require_routed(queue, message_type)
    return new_envelope(message_type, payload, correlation_id=correlation_id)


def _require_routed(queue: str, message_type: str) -> None:
    """A command no handler of `queue` takes is a deployment bug: work must never be dropped
    silently, nor wait in a queue that nothing reads."""
    if not routing.installed().routed(queue, message_type):
        raise RuntimeError(f"{queue} consumes no {message_type!r}: route it in the wiring")


def command_row_per(source: str, *, first_param: int) -> str:
    """The SQL ending a caller's statement that writes one outbox row per row of `source`
    (a CTE of that statement), for `command`'s envelope: parameters `$first_param` to
    `$first_param + 3` are its id, the queue, its type and `model_dump_json()`. The state and
    its command so commit in one statement, or neither does."""
    n = first_param
    return f"""
    INSERT INTO outbox (message_id, queue, message_type, body)
    SELECT ${n}, ${n + 1}, ${n + 2}, ${n + 3} FROM {source}
    RETURNING message_id"""


async def _publish_unless_pending(
    conn: AsyncConnection,
    queue: str,
    message_type: str,
    payload: dict[str, Any],
    *,
    correlation_id: str,
    in_flight_s: float,
) -> Envelope | None:
    """`publish`, unless the same command (queue, type, correlation id) is still pending:
    unsent, or sent less than `in_flight_s` ago and not yet recorded by its consumer in the
    inbox (waiting in the queue, being handled, or going round the retry ladder).

    Past `in_flight_s` a message nobody recorded was dead-lettered or lost, and sending it
    again is how it heals. The unsent half is also a constraint (`outbox_pending_once`), so
    two concurrent senders still leave one row; the NOT EXISTS comes first so a row a relay
    is publishing right now is seen as unsent without waiting on the relay's lock."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    envelope = new_envelope(message_type, payload, correlation_id=correlation_id)
    row = (
        await conn.execute(
            sql("""
        INSERT INTO outbox (message_id, queue, message_type, body, dedupe_key)
        SELECT :id, :queue, :type, :body, :key
         WHERE NOT EXISTS (
               SELECT 1 FROM outbox o
                WHERE o.queue = :queue AND o.dedupe_key = :key
                  AND (o.sent_at IS NULL
                       OR (o.sent_at > now() - make_interval(secs => :window)
                           AND NOT EXISTS (
                               SELECT 1 FROM inbox i
                                WHERE i.message_id = o.message_id AND i.consumer = o.queue))))
        ON CONFLICT (queue, dedupe_key) WHERE sent_at IS NULL AND dedupe_key IS NOT NULL
        DO NOTHING
        RETURNING id"""),
            {
                "id": envelope.id,
                "queue": queue,
                "type": message_type,
                "body": envelope.model_dump_json(),
                "key": f"{message_type}:{correlation_id}",
                "window": in_flight_s,
            },
        )
    ).first()
    if row is None:
        return None
    aftercommit.count(conn, WRITTEN)
    return envelope


@overload
async def send(
    conn: AsyncConnection,
    queue: str,
    message_type: str,
    payload: dict[str, Any],
    *,
    deliver_at: datetime | None = None,
    correlation_id: str | None = None,
    unless_pending: Literal[False] = False,
) -> Envelope: ...


@overload
async def send(
    conn: AsyncConnection,
    queue: str,
    message_type: str,
    payload: dict[str, Any],
    *,
    correlation_id: str,
    unless_pending: Literal[True],
    in_flight_s: float,
) -> Envelope | None: ...


async def send(
    conn: AsyncConnection,
    queue: str,
    message_type: str,
    payload: dict[str, Any],
    *,
    deliver_at: datetime | None = None,
    correlation_id: str | None = None,
    unless_pending: bool = False,
    in_flight_s: float = 0.0,
) -> Envelope | None:
    """A command: work that one queue's consumer must do. Refused when that queue has no
    handler routed for the type (a deployment bug: work must never be dropped silently, nor
    wait in a queue that nothing reads).

    `unless_pending=True` (periodic re-announcements: the syncs) sends nothing, and returns
    None, while the same command for the same `correlation_id` is still pending: unsent, or
    sent less than `in_flight_s` ago and not consumed yet (see `_publish_unless_pending`).
    However often it runs, and however long the broker is away, a caller so adds at most one
    row per correlation id."""
    _require_routed(queue, message_type)
    if unless_pending:
        if correlation_id is None or deliver_at is not None:
            raise ValueError("unless_pending needs a correlation_id and no deliver_at")
        return await _publish_unless_pending(
            conn,
            queue,
            message_type,
            payload,
            correlation_id=correlation_id,
            in_flight_s=in_flight_s,
        )
    return await publish(
        conn, queue, message_type, payload, deliver_at=deliver_at, correlation_id=correlation_id
    )


async def announce(
    conn: AsyncConnection,
    message_type: str,
    payload: dict[str, Any],
    *,
    correlation_id: str | None = None,
) -> list[Envelope]:
    """An event: something happened. Fanned out to every queue routed for its type, and to
    none while nothing consumes it (no queue fills up unread); a route with a condition
    (`routing.Condition`) gets it only where the condition says its handler may act."""
    queues = await routing.installed().wanted(conn, message_type, payload)
    if len(queues) <= 1:
        return [
            await publish(conn, q, message_type, payload, correlation_id=correlation_id)
            for q in queues
        ]
    # Many queues (a credited purchase's event goes to seven): their rows in one statement,
    # one envelope (and message id) each, as one `publish` per queue would write them.
    envelopes = [new_envelope(message_type, payload, correlation_id=correlation_id) for _ in queues]
    await conn.execute(
        sql("""
        INSERT INTO outbox (message_id, queue, message_type, body)
        SELECT m, q, :type, b
          FROM unnest(CAST(:ids AS uuid[]), CAST(:queues AS text[]), CAST(:bodies AS text[]))
               AS v(m, q, b)"""),
        {
            "ids": [e.id for e in envelopes],
            "queues": list(queues),
            "type": message_type,
            "bodies": [e.model_dump_json() for e in envelopes],
        },
    )
    aftercommit.count(conn, WRITTEN)
    return envelopes


@dataclass(frozen=True)
class RelayRound:
    published: int
    failed: int


class Relay:
    """Moves due outbox rows to RabbitMQ.

    Rows are claimed with `FOR UPDATE SKIP LOCKED` inside a transaction that stays open while
    they are published and confirmed, so any number of relays can run: each row is held by
    one relay at a time, and is marked sent only after the broker confirmed it.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        channel: AbstractChannel,
        names: Names,
        batch: int,
        *,
        tracer: Tracer | None = None,
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.names = names
        self.batch = batch
        # Tracing on: each row is published in a producer span, child of the span that wrote
        # the row, and carries that span's `traceparent` header to the consumer.
        self.tracer = tracer

    def _producer_span(self, queue: str, message_id: str, body: str) -> Span:
        assert self.tracer is not None
        try:
            parent = trace_context.parent_context(orjson.loads(body).get("traceparent"))
        except (orjson.JSONDecodeError, AttributeError):
            parent = None  # the consumer dead-letters such a body; still traced
        return self.tracer.start_span(
            f"{queue} publish",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "send",
                "messaging.destination.name": self.names.work(queue),
                "messaging.message.id": message_id,
            },
        )

    async def run_once(self) -> RelayRound:
        async def work(conn: AsyncConnection) -> RelayRound:
            rows = (
                await conn.execute(
                    sql("""
                SELECT id, message_id, queue, body FROM outbox
                 WHERE sent_at IS NULL AND available_at <= now()
                 ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"""),
                    {"n": self.batch},
                )
            ).all()
            if not rows:
                return RelayRound(0, 0)
            exchange = self.channel.default_exchange
            spans = (
                [self._producer_span(r.queue, str(r.message_id), r.body) for r in rows]
                if self.tracer is not None
                else None
            )
            # Publishes are pipelined; each await returns when the broker confirmed it.
            results = await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            r.body.encode(),
                            message_id=str(r.message_id),
                            content_type="application/json",
                            delivery_mode=PERSISTENT,
                            headers=(
                                {
                                    "traceparent": trace_context.format_traceparent(
                                        spans[i].get_span_context()
                                    )
                                }
                                if spans is not None
                                else None
                            ),
                        ),
                        routing_key=self.names.work(r.queue),
                        mandatory=True,
                        # Blocked by a broker alarm or a reconnect: give the rows back
                        # rather than hold their locks (and a connection) indefinitely.
                        timeout=PUBLISH_TIMEOUT_S,
                    )
                    for i, r in enumerate(rows)
                ),
                return_exceptions=True,
            )
            for span, res in zip(spans or (), results, strict=False):
                if isinstance(res, BaseException):
                    span.record_exception(res)
                    span.set_status(StatusCode.ERROR)
                span.end()
            sent = [
                r.id
                for r, res in zip(rows, results, strict=True)
                if not isinstance(res, BaseException)
            ]
            failed = [
                (r.id, res)
                for r, res in zip(rows, results, strict=True)
                if isinstance(res, BaseException)
            ]
            if sent:
                await conn.execute(
                    sql("""
                    UPDATE outbox SET sent_at = now()
                     WHERE id = ANY(CAST(:ids AS bigint[]))"""),
                    {"ids": sent},
                )
            for row_id, exc in failed:
                await conn.execute(
                    sql("""
                    UPDATE outbox SET publish_errors = publish_errors + 1, last_error = :e,
                           -- back off, so a row that keeps failing cannot hold up the rest
                           available_at = now() + make_interval(
                               secs => least(300, 2 ^ least(publish_errors, 10)))
                     WHERE id = :id"""),
                    {"id": row_id, "e": f"{type(exc).__name__}: {exc}"[:500]},
                )
            for r, res in zip(rows, results, strict=True):
                if not isinstance(res, BaseException):
                    QUEUE_PUBLISHED.labels(r.queue).inc()
            if failed:
                log.warning(
                    "outbox.publish.failed", count=len(failed), error=str(failed[0][1])[:200]
                )
            return RelayRound(len(sent), len(failed))

        return await in_transaction(self.engine, work)

    async def any_due(self) -> bool:
        """Whether any row is due: one statement on the driver, no transaction, the idle
        relay's cheap look before it claims anything."""
        return await on_driver(self.engine, lambda driver: driver.fetchval(_ANY_DUE)) is not None

    async def run(self, stop: asyncio.Event, idle_s: float) -> None:
        """Rounds until `stop`: at once while rows keep coming, else after `idle_s`, or as soon
        as a transaction of this process commits outbox rows (`WRITTEN`). An idle relay
        looks (`any_due`) before it claims."""
        wake = asyncio.Event()
        WRITTEN.relays.add(wake)
        stopping = asyncio.create_task(_forward(stop, wake))
        last_gauge = 0.0
        idle = False
        try:
            while not stop.is_set():
                woken = wake.is_set()
                wake.clear()
                try:
                    if idle and not woken and not await self.any_due():
                        result = RelayRound(0, 0)
                    else:
                        result = await self.run_once()
                except Exception as exc:  # the broker or database is away: keep trying
                    log.warning("outbox.relay.error", error=f"{type(exc).__name__}: {exc}"[:300])
                    result = RelayRound(0, 1)
                idle = result.published == 0 and not result.failed
                if time.monotonic() - last_gauge > 5:
                    await update_backlog_gauges(self.engine)
                    last_gauge = time.monotonic()
                if result.published >= self.batch:
                    continue
                with contextlib.suppress(TimeoutError):
                    if result.failed:
                        # Backing off: rows written meanwhile do not cut it short.
                        await asyncio.wait_for(stop.wait(), timeout=min(5.0, idle_s * 10))
                    else:
                        await asyncio.wait_for(wake.wait(), timeout=idle_s)
        finally:
            WRITTEN.relays.discard(wake)
            stopping.cancel()


_ANY_DUE = "SELECT 1 FROM outbox WHERE sent_at IS NULL AND available_at <= now() LIMIT 1"


async def _forward(stop: asyncio.Event, wake: asyncio.Event) -> None:
    """`stop` wakes the relay too."""
    await stop.wait()
    wake.set()


async def backlog(engine: AsyncEngine) -> tuple[int, float | None]:
    """Unsent rows that are due, and the age in seconds of the oldest of them."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sql("""
            SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age
              FROM outbox WHERE sent_at IS NULL AND available_at <= now()""")
            )
        ).one()
    return int(row.n), (float(row.age) if row.age is not None else None)


async def update_backlog_gauges(engine: AsyncEngine) -> None:
    try:
        count, age = await backlog(engine)
    except Exception:  # metrics must never take the relay down
        return
    OUTBOX_BACKLOG.set(count)
    OUTBOX_OLDEST_AGE.set(age or 0.0)


async def prune(
    engine: AsyncEngine,
    *,
    outbox_retention: timedelta,
    inbox_retention: timedelta,
    batch: int = 10_000,
) -> tuple[int, int]:
    """Delete sent outbox rows and inbox rows older than their retention."""

    async def work(conn: AsyncConnection) -> tuple[int, int]:
        sent = await conn.execute(
            sql("""
            DELETE FROM outbox WHERE id IN (
                SELECT id FROM outbox WHERE sent_at < now() - CAST(:r AS interval) LIMIT :n)"""),
            {"r": outbox_retention, "n": batch},
        )
        seen = await conn.execute(
            sql("""
            DELETE FROM inbox WHERE (message_id, consumer) IN (
                SELECT message_id, consumer FROM inbox
                 WHERE processed_at < now() - CAST(:r AS interval) LIMIT :n)"""),
            {"r": inbox_retention, "n": batch},
        )
        return int(sent.rowcount), int(seen.rowcount)

    return await in_transaction(engine, work)
