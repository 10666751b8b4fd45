"""The receiver's short road: the first delivery of a payment event that agrees with our order
is stored, with its `payment.processing` command, in two statements and no BEGIN or COMMIT;
what it stores is what the transactional path stores, and a repeat still goes that path."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from sqlalchemy import event, text

from commdesk_billing.db.engine import make_engine
from commdesk_billing.gateway import signature
from commdesk_billing.modules.webhooks import service
from tests.harness.stack import Stack, webhook_body


def _headers(stack: Stack, body: bytes) -> dict[str, str]:
    ts = str(int(time.time() * 1000))
    return {
        "content-type": "application/json",
        "x-webhook-timestamp": ts,
        "x-webhook-signature": signature.sign(
            stack.settings.cashfree_client_secret.get_secret_value(), ts, body
        ),
        "x-webhook-attempt": "1",
    }


async def _commands_for(stack: Stack, webhook_id: object) -> list[Any]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT queue, message_type, body FROM outbox "
                "WHERE CAST(body AS jsonb) -> 'payload' ->> 'webhook_id' = :w"
            ),
            {"w": str(webhook_id)},
        )
        return list(rows)


async def test_the_first_agreeing_delivery_is_stored_with_its_command_in_two_statements(
    stack: Stack,
) -> None:
    tok = stack.token()
    await stack.faults(webhook_drop_rate=1.0)  # the sandbox's own delivery never comes
    order = await stack.buy(tok)
    body = webhook_body(
        order["order_id"], order_amount="300.00", payment_amount="300.00", cf_payment_id="7701"
    )
    headers = _headers(stack, body)

    # One connection, watched: asyncpg logs what runs on the driver (BEGIN and COMMIT
    # included), SQLAlchemy's event what runs through it.
    engine = make_engine(stack.settings, pool_size=1)
    on_driver: list[str] = []
    through_sqlalchemy: list[str] = []
    event.listen(
        engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: through_sqlalchemy.append(statement),
    )
    try:
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            driver.add_query_logger(lambda record: on_driver.append(record.query))
        receipt = await service.receive(engine, stack.settings, body, headers, "127.0.0.1")
        await asyncio.sleep(0)  # asyncpg hands the log records over on the next loop turn
        first = (list(on_driver), list(through_sqlalchemy))
        on_driver.clear()
        through_sqlalchemy.clear()
        repeat = await service.receive(engine, stack.settings, body, headers, "127.0.0.1")
        await asyncio.sleep(0)
        again = (list(on_driver), list(through_sqlalchemy))
    finally:
        await engine.dispose()

    assert receipt.outcome == "accepted"
    statements, via_sqlalchemy = first
    assert via_sqlalchemy == []
    assert len(statements) == 2, statements
    assert "FROM payments" in statements[0]
    assert "INSERT INTO payment_webhooks" in statements[1]
    assert "INSERT INTO outbox" in statements[1]

    # Stored as the transactional path stores an accepted delivery, with its command.
    async with stack.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, outcome, processed_at, duplicates, order_id, "
                    "cf_payment_id, payment_id, raw_body, headers, delivery_attempt, "
                    "source_ip, event_type FROM payment_webhooks WHERE id = :i"
                ),
                {"i": receipt.webhook_id},
            )
        ).one()
    # Stored as received; the stack's worker may already have acted on its command (then
    # processed, as the transactional path's row would be by now).
    assert row.status in {"received", "processed"}
    assert (row.processed_at is None) == (row.status == "received")
    assert (row.order_id, row.cf_payment_id, str(row.payment_id)) == (
        order["order_id"],
        "7701",
        order["id"],
    )
    assert bytes(row.raw_body) == body
    assert row.headers["x-webhook-signature"] == headers["x-webhook-signature"]
    assert (row.delivery_attempt, row.source_ip) == (1, "127.0.0.1")
    assert row.event_type == "PAYMENT_SUCCESS_WEBHOOK"
    commands = await _commands_for(stack, receipt.webhook_id)
    assert [(c.queue, c.message_type) for c in commands] == [
        ("payment.processing", "payment.webhook")
    ]
    envelope = json.loads(commands[0].body)
    assert envelope["correlation_id"] == order["id"]
    assert envelope["payload"]["payment_id"] == order["id"]
    assert envelope["payload"]["order_id"] == order["order_id"]
    assert envelope["payload"]["source"] == "webhook"

    # A repeat tries the short road (whose insert stores nothing), then is the transactional
    # path's: counted on the stored row, no second command.
    assert (repeat.outcome, repeat.webhook_id) == ("duplicate", receipt.webhook_id)
    driver_again, sqlalchemy_again = again
    assert driver_again[:2] == statements
    assert [q.strip().upper() for q in driver_again[2:]] == ["BEGIN;", "COMMIT;"], driver_again
    assert any("FOR UPDATE" in s for s in sqlalchemy_again), sqlalchemy_again
    assert row.duplicates == 1  # (read after the repeat)
    assert len(await _commands_for(stack, receipt.webhook_id)) == 1


async def test_a_delivery_that_disagrees_with_the_order_takes_the_transactional_path(
    stack: Stack,
) -> None:
    """The short road stores nothing that is not accepted: a contradiction is stored by the
    transactional path, rejected, with its fraud event and no command."""
    tok = stack.token()
    await stack.faults(webhook_drop_rate=1.0)
    order = await stack.buy(tok)
    body = webhook_body(
        order["order_id"], order_amount="300.00", payment_amount="3.00", cf_payment_id="7702"
    )
    receipt = await service.receive(
        stack.engine, stack.settings, body, _headers(stack, body), "127.0.0.1"
    )
    assert receipt.outcome == "mismatch"
    status = await stack.scalar(
        "SELECT status FROM payment_webhooks WHERE id = :i", i=receipt.webhook_id
    )
    assert status == "rejected"
    assert await _commands_for(stack, receipt.webhook_id) == []
    frauds = await stack.scalar(
        "SELECT count(*) FROM fraud_events WHERE webhook_id = :i AND kind = :k",
        i=receipt.webhook_id,
        k="webhook_amount_mismatch",
    )
    assert frauds == 1
