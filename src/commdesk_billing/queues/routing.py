"""Message routing: which queues a message type goes to, and which handler takes it there.

The table itself is composed outside this package (`commdesk_billing.wiring`), which knows
the domains; this module only holds it once installed and dispatches by it. A message type
is sent only to queues where a handler for it is routed, so nothing is ever published to a
queue that nobody consumes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import BatchHandler, Handler, PermanentError, TwoPhase

# A route's message type that matches any type the queue receives and no other route names:
# for queues other services feed, whose producers name types of their own. It is never a
# destination (`send` and `announce` always name a real type).
ANY_TYPE = "*"

# Whether a route's handler can act on this event, asked by `outbox.announce` in the
# publisher's transaction before it writes the event's row for that queue. For a route whose
# handler does nothing for most events of its type: no message, no relay hop, no consumer
# transaction where the answer is no. It must answer yes whenever it cannot be sure.
Condition = Callable[[AsyncConnection, Mapping[str, Any]], Awaitable[bool]]


class UnknownMessageType(PermanentError):
    """A message whose type has no handler on the queue it arrived at (a producer's bug, or
    a message for a consumer that is not deployed): dead-lettered with this reason."""

    code = "unknown_message_type"


@dataclass(frozen=True)
class Table:
    """The deployment's routes: the (queue, message type) pairs that have a handler."""

    routes: frozenset[tuple[str, str]]
    # Routed events a route's handler takes only when its condition says yes (the route
    # still exists: `send` may name it, and a message already written is still consumed).
    conditions: Mapping[tuple[str, str], Condition] = field(
        default_factory=dict, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        unrouted = set(self.conditions) - self.routes
        if unrouted:
            raise ValueError(f"conditions on routes that do not exist: {sorted(unrouted)}")

    def queues(self) -> tuple[str, ...]:
        return tuple(sorted({q for q, _ in self.routes}))

    def destinations(self, message_type: str) -> tuple[str, ...]:
        """Every queue that consumes this message type (none: nobody wants it yet)."""
        return tuple(sorted(q for q, t in self.routes if t == message_type and t != ANY_TYPE))

    async def wanted(
        self, conn: AsyncConnection, message_type: str, payload: Mapping[str, Any]
    ) -> tuple[str, ...]:
        """The destinations whose handler may act on this event: each route's condition
        asked, in `conn`'s transaction, in queue order."""
        out: list[str] = []
        for queue in self.destinations(message_type):
            condition = self.conditions.get((queue, message_type))
            if condition is None or await condition(conn, payload):
                out.append(queue)
        return tuple(out)

    def types(self, queue: str) -> tuple[str, ...]:
        return tuple(sorted(t for q, t in self.routes if q == queue))

    def routed(self, queue: str, message_type: str) -> bool:
        return (queue, message_type) in self.routes


def per_queue(handlers: Mapping[tuple[str, str], Handler]) -> dict[str, Handler]:
    """One dispatcher per consumed queue, for the consumer runtime."""
    queues = sorted({q for q, _ in handlers})
    return {
        queue: Dispatch(queue, {t: h for (q, t), h in handlers.items() if q == queue})
        for queue in queues
    }


def per_queue_batches(handlers: Mapping[tuple[str, str], BatchHandler]) -> dict[str, BatchHandler]:
    queues = sorted({q for q, _ in handlers})
    return {
        queue: BatchDispatch(queue, {t: h for (q, t), h in handlers.items() if q == queue})
        for queue in queues
    }


class Dispatch(TwoPhase):
    """One queue's handlers by message type. Plain handlers run in the consumer's
    transaction; two-phase ones fetch first, exactly as if they were the queue's handler."""

    def __init__(self, queue: str, by_type: Mapping[str, Handler]) -> None:
        self.queue = queue
        self.by_type = dict(by_type)

    def _handler(self, envelope: Envelope) -> Handler:
        handler = self.by_type.get(envelope.type) or self.by_type.get(ANY_TYPE)
        if handler is None:
            raise UnknownMessageType(
                f"{self.queue} has no handler for message type {envelope.type[:100]!r}"
            )
        return handler

    async def fetch(self, envelope: Envelope) -> object:
        handler = self._handler(envelope)
        if isinstance(handler, TwoPhase):
            return await handler.fetch(envelope)
        return None

    async def apply(self, conn: AsyncConnection, envelope: Envelope, fetched: object) -> None:
        handler = self._handler(envelope)
        if isinstance(handler, TwoPhase):
            await handler.apply(conn, envelope, fetched)
        else:
            await handler(conn, envelope)

    async def aclose(self) -> None:
        seen: set[int] = set()
        for handler in self.by_type.values():
            closer = getattr(handler, "aclose", None)
            if closer is not None and id(handler) not in seen:
                seen.add(id(handler))
                await closer()


class BatchDispatch:
    """A batched queue's handlers by message type: each batch handler gets its envelopes,
    of whichever types it serves, in one call, in arrival order; an envelope of a type with
    no batch handler is refused alone.

    One call per handler, not per type: a handler takes its locks in an order of its own
    (the analytics rollups lock their days sorted, the debits their wallets by id), and two
    calls in one transaction would take them in two runs, which another batch's transaction
    could cross in the opposite order (a deadlock)."""

    def __init__(self, queue: str, by_type: Mapping[str, BatchHandler]) -> None:
        self.queue = queue
        self.by_type = dict(by_type)

    async def __call__(
        self, conn: AsyncConnection, envelopes: list[Envelope]
    ) -> list[Exception | None]:
        outcomes: list[Exception | None] = [None] * len(envelopes)
        # Keyed by the handler itself (a bound method compares equal to the same method of
        # the same object), so the types one handler serves share its call.
        groups: dict[BatchHandler, list[int]] = {}
        for i, envelope in enumerate(envelopes):
            handler = self.by_type.get(envelope.type) or self.by_type.get(ANY_TYPE)
            if handler is not None:
                groups.setdefault(handler, []).append(i)
            else:
                outcomes[i] = UnknownMessageType(
                    f"{self.queue} has no handler for message type {envelope.type[:100]!r}"
                )
        for handler, index in groups.items():
            results = await handler(conn, [envelopes[i] for i in index])
            for i, result in zip(index, results, strict=True):
                outcomes[i] = result
        return outcomes


_installed: Table | None = None


def install(table: Table) -> None:
    """Make this process's routing table known to `outbox.send` and `outbox.announce`
    (done by the composition root when a process starts)."""
    global _installed
    _installed = table


def installed() -> Table:
    if _installed is None:
        raise RuntimeError(
            "no routing table installed: start processes through commdesk_billing.wiring"
        )
    return _installed
