"""`outbox.announce`: an event's row for every queue routed for its type, each its own
message, written in the caller's transaction (many queues: one statement writes them all)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.queues import outbox, routing
from commdesk_billing.queues.envelope import Envelope, decode


async def _rows(engine: AsyncEngine, ids: list[uuid.UUID]) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("""SELECT queue, message_type, body FROM outbox
                     WHERE message_id = ANY(:ids) ORDER BY queue"""),
            {"ids": ids},
        )
        return [(r.queue, r.message_type, r.body) for r in found]


@pytest.mark.parametrize("message_type", ["payment.credited", "payment.status_changed"])
async def test_one_row_per_routed_queue_each_its_own_message(
    engine: AsyncEngine, message_type: str
) -> None:
    queues = routing.installed().destinations(message_type)
    assert queues  # both are routed somewhere; payment.credited to many queues
    payload = {"payment_id": str(uuid.uuid4()), "credits": 3200}
    correlation = str(uuid.uuid4())

    async def work(conn: AsyncConnection) -> list[Envelope]:
        return await outbox.announce(conn, message_type, payload, correlation_id=correlation)

    envelopes = await in_transaction(engine, work)
    assert len(envelopes) == len(queues)
    assert len({e.id for e in envelopes}) == len(queues)
    rows = await _rows(engine, [e.id for e in envelopes])
    assert [q for q, _, _ in rows] == sorted(queues)
    by_id = {e.id: e for e in envelopes}
    for _, kind, body in rows:
        sent = decode(body.encode())
        assert kind == message_type
        assert sent == by_id[sent.id]
        assert (sent.type, sent.payload, sent.correlation_id) == (
            message_type,
            payload,
            correlation,
        )


async def test_nothing_is_announced_when_the_transaction_rolls_back(engine: AsyncEngine) -> None:
    written: list[Envelope] = []

    class Undone(Exception):
        pass

    async def work(conn: AsyncConnection) -> None:
        written.extend(await outbox.announce(conn, "payment.credited", {"payment_id": "x"}))
        raise Undone

    with pytest.raises(Undone):
        await in_transaction(engine, work)
    assert len(written) > 1
    assert await _rows(engine, [e.id for e in written]) == []


async def test_many_queues_take_one_statement(engine: AsyncEngine) -> None:
    """A credited purchase announces to seven queues in its crediting transaction: one
    round trip, not seven."""
    assert len(routing.installed().destinations("payment.credited")) > 2
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    async with engine.connect() as conn:
        event.listen(conn.sync_connection, "before_cursor_execute", seen)
        async with conn.begin():
            await outbox.announce(conn, "payment.credited", {"payment_id": "y"})
            await conn.rollback()
    assert len(statements) == 1


async def test_a_condition_decides_per_event_and_only_on_a_routed_route(
    engine: AsyncEngine,
) -> None:
    async def only_big(conn: AsyncConnection, payload: object) -> bool:
        return isinstance(payload, dict) and int(payload.get("credits", 0)) > 100

    routes = frozenset({("a.queue", "thing.done"), ("b.queue", "thing.done")})
    table = routing.Table(routes, {("b.queue", "thing.done"): only_big})
    async with engine.connect() as conn:
        assert await table.wanted(conn, "thing.done", {"credits": 5}) == ("a.queue",)
        assert await table.wanted(conn, "thing.done", {"credits": 500}) == ("a.queue", "b.queue")
    # Every destination still counts the route (a message already written is consumed).
    assert table.destinations("thing.done") == ("a.queue", "b.queue")
    with pytest.raises(ValueError, match="do not exist"):
        routing.Table(routes, {("c.queue", "thing.done"): only_big})
