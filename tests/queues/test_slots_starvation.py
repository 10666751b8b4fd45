"""A steady stream of money-path messages does not keep the follow-up work out of the
transaction slots for as long as the stream lasts (`runtime.Slots`): a follow-up message is
handled after a bounded number of money messages, not after the whole backlog."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.worker import Worker
from tests.queues.conftest import wait_for

MONEY = "wallet.credit"
FOLLOW_UP = "notifications.billing"
BACKLOG = 300


async def test_a_follow_up_message_is_not_starved_by_a_money_backlog(
    qsettings: Settings,
) -> None:
    one_slot = qsettings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 5})
    engine = make_engine(one_slot)
    marker = uuid.uuid4().hex
    money_done = 0
    money_before_follow_up: list[int] = []

    async def money(conn: AsyncConnection, env: Envelope) -> None:
        nonlocal money_done
        if env.payload.get("marker") != marker:
            return  # another test's row, relayed by this worker
        await conn.execute(text("SELECT pg_sleep(0.01)"))
        money_done += 1

    async def follow_up(conn: AsyncConnection, env: Envelope) -> None:
        if env.payload.get("marker") == marker:
            money_before_follow_up.append(money_done)

    async def produce(conn: AsyncConnection) -> None:
        for _ in range(BACKLOG):
            await publish(conn, MONEY, "test.money", {"marker": marker})

    try:
        async with Worker(one_slot, engine=engine, handlers={MONEY: money, FOLLOW_UP: follow_up}):
            await in_transaction(engine, produce)

            async def money_flowing() -> bool:
                return money_done >= 5

            await wait_for(money_flowing, 60, "the money backlog being worked")
            await in_transaction(
                engine, lambda c: publish(c, FOLLOW_UP, "test.follow_up", {"marker": marker})
            )

            async def follow_up_handled() -> bool:
                return bool(money_before_follow_up)

            await wait_for(follow_up_handled, 120, "the follow-up message handled")
    finally:
        await engine.dispose()
    # Strict priority served it only once the money backlog had drained (~BACKLOG).
    assert money_before_follow_up[0] < BACKLOG // 3, money_before_follow_up
