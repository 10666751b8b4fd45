"""The worker process: topology, consumers and the outbox relay over one robust connection."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.connection import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.queues.outbox import Relay
from commdesk_billing.queues.runtime import BatchHandler, Consumers, Handler
from commdesk_billing.queues.topology import QUEUES, Names, declare
from commdesk_billing.telemetry import errors, tracing

log = structlog.get_logger(__name__)


def names_for(settings: Settings) -> Names:
    return Names(settings.rabbitmq_queue_prefix, len(settings.retry_delays_s))


async def _connect_once(settings: Settings) -> AbstractRobustConnection:
    """One bounded attempt. The robust connection's own reconnect loop only starts once the
    first connect succeeded: a first attempt that fails, times out or is cancelled (SIGTERM
    while connecting) closes the connection, so no reconnect task outlives it — one left
    behind would keep a stopping process alive, reconnecting for ever."""
    timeout = settings.rabbitmq_connect_timeout_s
    connection = aio_pika.RobustConnection(
        make_url(settings.rabbitmq_url), client_properties={"connection_name": "commdesk-billing"}
    )
    try:
        # A broker that accepts TCP and never answers the AMQP handshake must not hold the
        # connect for ever; the outer bound also covers the library retrying inside it.
        await asyncio.wait_for(connection.connect(timeout=timeout), timeout=timeout + 1)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), timeout=5)
        raise
    return connection


async def connect(settings: Settings, *, attempts: int = 60) -> AbstractRobustConnection:
    """A robust connection (it reconnects and restores channels and consumers by itself);
    the first connect is retried too, so a worker can start before the broker."""
    for attempt in range(1, attempts + 1):
        try:
            return await _connect_once(settings)
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
            if attempt == attempts:
                raise
            log.warning("rabbitmq.connect.retry", attempt=attempt, error=str(exc)[:200])
            await asyncio.sleep(min(5.0, 0.2 * attempt))
    raise AssertionError("unreachable")


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        handlers: dict[str, Handler],
        relay: bool = True,
        engine: AsyncEngine | None = None,
        batch_handlers: dict[str, BatchHandler] | None = None,
        queues: tuple[str, ...] = QUEUES,
    ) -> None:
        """`handlers` and `batch_handlers` by queue (the composition root builds them);
        `queues` are declared at start, consumed or not."""
        self.settings = settings
        self.handlers = handlers
        self.queues = tuple(sorted(set(queues) | set(handlers)))
        batch = batch_handlers or {}
        # A queue is consumed in batches only if it is consumed at all here.
        self.batch_handlers = {q: h for q, h in batch.items() if q in self.handlers}
        self.with_relay = relay
        self._engine = engine
        self._own_engine = engine is None
        self._stop = asyncio.Event()
        self._relay_task: asyncio.Task[None] | None = None
        self.consumers: Consumers | None = None
        self._topology_channel: AbstractRobustChannel | None = None
        self.connection: AbstractRobustConnection | None = None

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None
        return self._engine

    async def start(self) -> None:
        if self._engine is None:
            self._engine = make_engine(self.settings)
        errors.init(self.settings, "worker")
        tracer = tracing.tracer(self.settings, "worker")
        names = names_for(self.settings)
        self.connection = await connect(self.settings)
        # The topology is declared on a robust channel kept open (the consumers' own, when
        # there are any): such a channel declares it all again whenever it is restored (a
        # reconnect, a broker that lost its queues), instead of looking for queues that are
        # gone and reconnecting for ever.
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        self._topology_channel = channel

        async def heal() -> None:
            log.warning("queue.topology.redeclared")
            await declare(channel, names, self.queues)

        await declare(channel, names, self.queues)
        if self.handlers:
            self.consumers = Consumers(
                self.engine,
                channel,
                names,
                self.settings,
                self.handlers,
                batch_handlers=self.batch_handlers,
                heal=heal,
                tracer=tracer,
            )
            await self.consumers.start()
        if self.with_relay:
            relay_channel = await self.connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            relay = Relay(
                self.engine, relay_channel, names, self.settings.relay_batch, tracer=tracer
            )
            self._relay_task = asyncio.create_task(
                relay.run(self._stop, self.settings.relay_idle_s)
            )
        log.info("worker.started", queues=sorted(self.handlers), relay=self.with_relay)

    def online(self) -> bool:
        """Connected to the broker right now: not closed, not reconnecting. `connected` is
        cleared the moment the link drops; `reconnecting` alone is only true while an attempt
        runs, not while the robust connection waits between attempts."""
        connection = self.connection
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and not getattr(connection, "reconnecting", False)
        )

    def readiness(self) -> dict[str, bool]:
        """What `/readyz` reports: connected to the broker (not reconnecting), consuming
        every queue it was given, its relay running."""
        checks = {"broker": self.online()}
        if self.handlers:
            checks["consumers"] = self.consumers is not None and self.consumers.started
        if self.with_relay:
            checks["relay"] = self._relay_task is not None and not self._relay_task.done()
        return checks

    async def stop(self) -> None:
        """Graceful: stop consuming, finish in-flight messages, stop the relay, close."""
        self._stop.set()
        # Cut off from the broker (reconnecting, or never connected), nothing the broker would
        # have to answer can finish: consumers are not cancelled one by one (the broker drops
        # them with the connection) and the relay's round is not waited for (cancelling it
        # rolls its claim back and leaves the rows unsent, for the next worker). So SIGTERM
        # is honoured within seconds in every state.
        online = self.online()
        if self.consumers is not None:
            await self.consumers.stop(cancel=online)
        if self._relay_task is not None:
            # The relay finishes its round (bounded by the publish timeout); past that it is
            # cancelled, which rolls its transaction back and leaves the rows unsent.
            try:
                await asyncio.wait_for(self._relay_task, timeout=45 if online else 2)
            except TimeoutError:
                log.warning("worker.relay.cancelled", online=online)
        closed: set[int] = set()
        for handler in self.handlers.values():
            closer = getattr(handler, "aclose", None)
            if closer is not None and id(handler) not in closed:
                closed.add(id(handler))
                await closer()
        if self.connection is not None:
            try:
                # A robust connection mid-reconnect-attempt may wait on that attempt to close.
                await asyncio.wait_for(self.connection.close(), timeout=5)
            except TimeoutError:
                log.warning("worker.connection.close_timeout")
        if self._own_engine and self._engine is not None:
            await self._engine.dispose()
        if self.settings.otel_exporter_otlp_endpoint:
            # The last messages' spans leave before the process does.
            await asyncio.to_thread(tracing.flush)
        log.info("worker.stopped")

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
