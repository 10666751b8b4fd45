"""The payment sync while the broker is away (issue 12's storm, for real): payments paid at
Cashfree whose webhooks never came, a worker cut off from the broker, and the sync job run
again and again meanwhile. Each payment gets one announcement, not one per run; when the
broker is back every payment is credited exactly once."""

from __future__ import annotations

import aio_pika
import pytest

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.modules.payments.jobs import sync_open_payments
from commdesk_billing.queues.topology import Names, delete
from tests.harness.faults import Recorder
from tests.harness.proxy import fault_proxy
from tests.harness.stack import StackFactory
from tests.modules.payments.test_sync_storms import _quiet_for_a_while, _sync_rows

pytestmark = pytest.mark.slow

RUNS = 5


async def _forget_queues(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        names = Names(settings.rabbitmq_queue_prefix, len(settings.retry_delays_s))
        await delete(await connection.channel(), names)


async def test_syncs_during_a_broker_outage_announce_once_and_credit_once(
    stack_factory: StackFactory, faults: Recorder
) -> None:
    # A stack of its own, with no worker of the factory's: this test runs its own, through
    # the proxy, and cleans its queues up with it.
    stack = await stack_factory(worker=False, db_pool_size=4, db_max_overflow=4)
    await stack.faults(webhook_drop_rate=1.0)  # only the sync can find these payments
    tok = stack.token()
    async with fault_proxy(stack.settings.rabbitmq_url) as proxy:
        s = stack.settings.model_copy(
            update={"rabbitmq_url": proxy.url(stack.settings.rabbitmq_url)}
        )
        async with wiring.worker(s, engine=stack.engine):
            orders = [await stack.buy(tok) for _ in range(3)]
            ids = [o["id"] for o in orders]
            await proxy.cut("refuse")
            for order in orders:
                await stack.pay(order)
            announced = []
            for _ in range(RUNS):
                await _quiet_for_a_while(stack, ids)
                announced.append(await sync_open_payments(stack.engine, stack.settings))
            rows = await _sync_rows(stack, ids)
            unsent = await stack.scalar(
                "SELECT count(*) FROM outbox WHERE dedupe_key = ANY(CAST(:k AS text[])) "
                "AND sent_at IS NULL",
                k=[f"payment.sync:{i}" for i in ids],
            )
            proxy.heal()
            for pid in ids:
                await stack.wait_status(tok, pid, {"CREDITED"}, timeout_s=90)
        await _forget_queues(stack.settings)
    grants = await stack.scalar(
        "SELECT count(*) FROM wallet_transactions WHERE idempotency_key = ANY(CAST(:k AS text[]))",
        k=[f"payment:{i}:purchase" for i in ids],
    )
    wallet = await stack.wallet(tok)
    faults.record(
        "payment sync run again and again while the broker is away",
        injected=RUNS,
        what=f"3 paid payments with every webhook dropped; {RUNS} sync runs with the worker "
        "cut off",
        lost=max(0, 3 - grants),
        twice=max(0, grants - 3) + sum(max(0, n - 1) for n in rows.values()),
        outcome="one announcement per payment (not one per run); each credited once after",
    )
    assert announced == [3, 0, 0, 0, 0]
    assert rows == dict.fromkeys(ids, 1) and unsent == 3
    assert grants == 3
    assert wallet["available_credits"] == 3 * 3200
