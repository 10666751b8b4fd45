"""Routing by (queue, message type) through a real worker: on a queue only our own code
feeds, a type nobody routed there is dead-lettered with its reason and changes nothing; on
the queues other services feed, any type is still taken as a grant or a debit."""

from __future__ import annotations

from collections import Counter

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.queues.admin import dlq_list
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.topology import Names
from tests.conftest import new_wallet
from tests.queues.conftest import queue_depth, wait_for


async def test_unrouted_types_are_dead_lettered_where_only_we_produce(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    wallet = await new_wallet(engine, 10)
    names = Names(qsettings.rabbitmq_queue_prefix, len(qsettings.retry_delays_s))
    debit = {"wallet_id": str(wallet.id), "credits": 3, "reason": "routed"}

    async def produce(conn: AsyncConnection) -> None:
        # A debit's payload on queues that have no such type: refused, whatever it says.
        await publish(conn, "refund.processing", "wallet.debit.requested", debit)
        await publish(conn, "invoice.generate", "refund.bogus", debit)
        await publish(conn, "wallet.debit", "wallet.debit.requested", debit)

    async def settled() -> bool:
        w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
        dead = await queue_depth(qsettings, names.dlq("refund.processing")) + await queue_depth(
            qsettings, names.dlq("invoice.generate")
        )
        return w.available_credits == 7 and dead == 2

    async with wiring.worker(qsettings, engine=engine):
        await in_transaction(engine, produce)
        await wait_for(settled, 30, "one debit applied and two dead letters")
    on_refunds = await dlq_list(qsettings, "refund.processing")
    on_invoices = await dlq_list(qsettings, "invoice.generate")
    assert Counter(d.reason for d in on_refunds + on_invoices) == {"unknown_message_type": 2}
    assert on_refunds[0].detail == (
        "refund.processing has no handler for message type 'wallet.debit.requested'"
    )
    assert (
        on_invoices[0].detail == "invoice.generate has no handler for message type 'refund.bogus'"
    )
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    assert w.available_credits == 7  # only the routed debit moved credits


async def test_other_services_types_are_taken_on_their_queues(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    wallet = await new_wallet(engine, 10)

    async def produce(conn: AsyncConnection) -> None:
        await publish(
            conn,
            "wallet.debit",
            "events.boost.used",
            {"wallet_id": str(wallet.id), "credits": 4, "reason": "boost", "idempotency_key": "b1"},
        )
        await publish(
            conn,
            "wallet.credit",
            "community.reward",
            {
                "wallet_id": str(wallet.id),
                "credits": 2,
                "source": "promotional",
                "reason": "reward",
                "idempotency_key": "r1",
            },
        )

    async def balance() -> bool:
        w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
        return w.available_credits == 8

    async with wiring.worker(qsettings, engine=engine):
        await in_transaction(engine, produce)
        await wait_for(balance, 30, "the debit and the grant applied")
    assert await dlq_list(qsettings, "wallet.debit") == []
    assert await dlq_list(qsettings, "wallet.credit") == []
