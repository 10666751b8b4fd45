"""What no notification can be made of is refused to the dead-letter queue with its
reason, through the real consumer runtime and broker, and records and sends nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.mailsink import MailSink
from commdesk_billing.modules.notifications.consumers import BillingNotifications
from commdesk_billing.modules.notifications.jobs import deliver_due
from commdesk_billing.queues import routing
from commdesk_billing.queues.admin import dlq_list
from commdesk_billing.queues.envelope import Envelope, new_envelope
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.runtime import PermanentError
from commdesk_billing.queues.topology import Names, delete
from commdesk_billing.queues.worker import Worker
from tests.modules.notifications.conftest import Receiver, make_user
from tests.modules.notifications.samples import full, minimal

UNKNOWN = "notifications.billing has no handler for message type 'payment.exploded'"


@pytest.fixture
async def qsettings(nsettings: Settings) -> AsyncIterator[Settings]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    s = nsettings.model_copy(
        update={
            "rabbitmq_queue_prefix": prefix,
            "retry_delays_s": (0.2, 0.4, 0.8),
            "max_attempts": 3,
            "relay_idle_s": 0.05,
        }
    )
    yield s
    connection = await aio_pika.connect(s.rabbitmq_url)
    async with connection:
        await delete(await connection.channel(), Names(prefix, len(s.retry_delays_s)))


async def test_unknown_and_malformed_events_are_dead_lettered_with_their_reason(
    engine: AsyncEngine, qsettings: Settings, sink: MailSink, receiver: Receiver
) -> None:
    address = f"dlq-{uuid.uuid4().hex[:8]}@example.test"
    user = str(await make_user(engine, address))
    stranger = str(uuid.uuid4())
    good = minimal(user)
    bad: list[tuple[str, dict[str, Any]]] = [
        ("payment.exploded", good["payment.credited"]),
        ("payment.credited", {**good["payment.credited"], "amount_paise": 12.5}),
        ("payment.credited", {k: v for k, v in good["payment.credited"].items() if k != "user_id"}),
        ("payment.credited", {**good["payment.credited"], "user_id": stranger}),
        (
            "auto_recharge.checkout_opened",
            {**full(user)["auto_recharge.checkout_opened"], "checkout_url": "javascript:x()"},
        ),
    ]
    published: list[Envelope] = []

    async def send(conn: AsyncConnection) -> None:
        published.clear()  # in_transaction may run this again
        for kind, payload in bad:
            published.append(await publish(conn, "notifications.billing", kind, payload))

    # The queue's consumer as a worker builds it: the dispatcher over wiring.ROUTES.
    dispatcher = routing.per_queue(wiring.handlers(qsettings))["notifications.billing"]
    async with Worker(qsettings, engine=engine, handlers={"notifications.billing": dispatcher}):
        await in_transaction(engine, send)
        mine = {str(e.id) for e in published}
        dead: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while set(dead) != mine and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            dead = {
                d.message_id: (d.type, d.reason, d.detail, d.attempts)
                for d in await dlq_list(qsettings, "notifications.billing")
                if d.message_id in mine
            }
    ids = [str(e.id) for e in published]
    assert [dead.get(i) for i in ids] == [
        ("payment.exploded", "unknown_message_type", UNKNOWN, 1),
        (
            "payment.credited",
            "permanent_error",
            "payment.credited payload is not valid: amount_paise: Input should be a valid integer",
            1,
        ),
        (
            "payment.credited",
            "permanent_error",
            "payment.credited payload is not valid: user_id: Field required",
            1,
        ),
        (
            "payment.credited",
            "permanent_error",
            f"payment.credited: user {stranger} does not exist",
            1,
        ),
        (
            "auto_recharge.checkout_opened",
            "permanent_error",
            "auto_recharge.checkout_opened payload is not valid: checkout_url: String should "
            "match pattern '^https?://[^\\s]{1,2000}$'",
            1,
        ),
    ]
    # Nothing was recorded for them, so nothing is ever sent.
    async with engine.connect() as conn:
        recorded = (
            await conn.execute(
                text("""SELECT count(*) FROM notification_deliveries
                         WHERE notification_key = ANY(:keys)"""),
                {
                    "keys": [
                        f"payment.credited:{good['payment.credited']['payment_id']}",
                        "auto_recharge.checkout_opened:rc-1",
                    ]
                },
            )
        ).scalar_one()
    assert recorded == 0
    await deliver_due(engine, qsettings)
    assert [m for m in sink.messages if address in m.rcpt_tos] == []


async def test_the_consumer_itself_refuses_a_type_it_has_no_template_for(
    engine: AsyncEngine,
) -> None:
    # Behind the dispatcher, a second guard: a type routed here by mistake is permanent.
    envelope = new_envelope("payment.exploded", minimal()["payment.credited"])
    with pytest.raises(PermanentError, match=r"^no notification is made of payment\.exploded$"):
        await in_transaction(engine, lambda c: BillingNotifications()(c, envelope))
