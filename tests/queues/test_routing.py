"""Routing by (queue, message type) through a real worker: a type nobody routed to a queue
is dead-lettered with its reason, its neighbours still apply, nothing stored changes."""

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


async def test_an_unrouted_type_is_dead_lettered_and_the_routed_one_applies(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    wallet = await new_wallet(engine, 10)
    names = Names(qsettings.rabbitmq_queue_prefix, len(qsettings.retry_delays_s))
    debit = {"wallet_id": str(wallet.id), "credits": 3, "reason": "routed"}

    async def produce(conn: AsyncConnection) -> None:
        # The same payload under a type wallet.debit does not consume, then under its own.
        await publish(conn, "wallet.debit", "wallet.debit.bogus", {**debit, "reason": "bogus"})
        await publish(conn, "wallet.credit", "wallet.debit.requested", debit)
        await publish(conn, "wallet.debit", "wallet.debit.requested", debit)

    async def settled() -> bool:
        w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
        dead = await queue_depth(qsettings, names.dlq("wallet.debit")) + await queue_depth(
            qsettings, names.dlq("wallet.credit")
        )
        return w.available_credits == 7 and dead == 2

    async with wiring.worker(qsettings, engine=engine):
        await in_transaction(engine, produce)
        await wait_for(settled, 30, "one debit applied and two dead letters")
    on_debit = await dlq_list(qsettings, "wallet.debit")
    on_credit = await dlq_list(qsettings, "wallet.credit")
    assert Counter(d.reason for d in on_debit + on_credit) == {"unknown_message_type": 2}
    assert "wallet.debit has no handler for message type 'wallet.debit.bogus'" in on_debit[0].detail
    assert "wallet.credit has no handler" in on_credit[0].detail
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    assert w.available_credits == 7  # only the routed debit moved credits
