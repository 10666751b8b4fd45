"""No announcement storms (issue 12): the payment sync announces a payment at most once
while its announcement is pending, and Cashfree's 429 backs the work off instead of being
slept on inside a request or a consumer."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway import backoff
from commdesk_billing.modules.payments.jobs import sync_open_payments
from commdesk_billing.queues import outbox
from commdesk_billing.queues.runtime import in_flight_s
from commdesk_billing.security.jwt import Role
from commdesk_billing.telemetry.metrics import QUEUE_RETRIED
from tests.harness.faults import Recorder
from tests.harness.stack import Stack

_QUIET_FOR_A_WHILE = """
    UPDATE payments SET updated_at = now() - interval '1 hour',
                        last_synced_at = CASE WHEN last_synced_at IS NULL THEN NULL
                                              ELSE now() - interval '1 hour' END
     WHERE id = ANY(CAST(:ids AS uuid[]))"""


async def _quiet_for_a_while(stack: Stack, ids: list[str]) -> None:
    """As if BILLING_PAYMENT_SYNC_AFTER_S had passed since the payments last changed and
    were last claimed by the sync (each run of the job then claims them again)."""
    await stack.execute(_QUIET_FOR_A_WHILE, ids=ids)


async def _sync_rows(stack: Stack, ids: list[str]) -> dict[str, int]:
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""
                SELECT substr(dedupe_key, length('payment.sync:') + 1) AS pid, count(*) AS n
                  FROM outbox
                 WHERE queue = 'payment.processing' AND message_type = 'payment.sync'
                   AND dedupe_key = ANY(CAST(:keys AS text[]))
                 GROUP BY dedupe_key"""),
                {"keys": [f"payment.sync:{i}" for i in ids]},
            )
        ).all()
    return {r.pid: int(r.n) for r in rows}


async def _open_payments(stack: Stack, n: int) -> list[str]:
    tok = stack.token()
    return [(await stack.buy(tok))["id"] for _ in range(n)]


async def _sync_counts(stack: Stack, ids: list[str]) -> list[int]:
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""
                SELECT sync_count FROM payments WHERE id = ANY(CAST(:ids AS uuid[]))
                 ORDER BY array_position(CAST(:ids AS uuid[]), id)"""),
                {"ids": ids},
            )
        ).all()
    return [int(r.sync_count) for r in rows]


async def test_with_nothing_sent_five_syncs_add_one_row_per_open_payment(
    quiet_stack: Stack, faults: Recorder
) -> None:
    stack = quiet_stack
    # Anything left due by earlier tests is announced now (and stays pending for good: this
    # stack has no relay), so every run below can only announce this test's payments.
    await sync_open_payments(stack.engine, stack.settings)
    ids = await _open_payments(stack, 3)
    runs = []
    for _ in range(5):
        await _quiet_for_a_while(stack, ids)
        runs.append(await sync_open_payments(stack.engine, stack.settings))
    rows = await _sync_rows(stack, ids)
    faults.record(
        "the payment sync run again and again with nothing consumed",
        injected=5,
        what="5 sync runs over 3 open payments, no relay",
        lost=None,
        twice=sum(max(0, n - 1) for n in rows.values()),
        outcome="one announcement per payment, not 15",
    )
    assert runs == [3, 0, 0, 0, 0]
    # Every run did claim them (the storm of issue 12 was one row per claim) ...
    assert await _sync_counts(stack, ids) == [5, 5, 5]
    # ... and each has exactly one announcement, still unsent.
    assert await _sync_rows(stack, ids) == dict.fromkeys(ids, 1)
    unsent = await stack.scalar(
        "SELECT count(*) FROM outbox WHERE dedupe_key = ANY(CAST(:keys AS text[])) "
        "AND sent_at IS NULL",
        keys=[f"payment.sync:{i}" for i in ids],
    )
    assert unsent == 3


async def test_a_sent_announcement_counts_until_consumed_or_past_the_ladder(
    quiet_stack: Stack,
) -> None:
    stack = quiet_stack
    await sync_open_payments(stack.engine, stack.settings)
    [pid] = await _open_payments(stack, 1)
    key = f"payment.sync:{pid}"
    await _quiet_for_a_while(stack, [pid])
    assert await sync_open_payments(stack.engine, stack.settings) == 1
    # The relay published it (no consumer has recorded it yet): in flight, not again.
    await stack.execute("UPDATE outbox SET sent_at = now() WHERE dedupe_key = :k", k=key)
    await _quiet_for_a_while(stack, [pid])
    assert await sync_open_payments(stack.engine, stack.settings) == 0
    # Its consumer recorded it in the inbox: done, so the next due sync announces again.
    await stack.execute(
        "INSERT INTO inbox (message_id, consumer, message_type) "
        "SELECT message_id, queue, message_type FROM outbox WHERE dedupe_key = :k",
        k=key,
    )
    await _quiet_for_a_while(stack, [pid])
    assert await sync_open_payments(stack.engine, stack.settings) == 1
    # That one was sent longer ago than any retry ladder lasts and nobody recorded it
    # (dead-lettered or lost): announced again, which is how it heals.
    window = in_flight_s(stack.settings)
    assert window == 60.0 + 1.5 * (0.2 + 0.4 + 0.8)  # the stack's ladder, 4 attempts
    assert in_flight_s(Settings()) == 60.0 + 1.5 * (1 + 5 + 30 + 120 + 600)  # ~20 min
    await stack.execute(
        "UPDATE outbox SET sent_at = now() - make_interval(secs => :w + 1) "
        "WHERE dedupe_key = :k AND sent_at IS NULL",
        k=key,
        w=window,
    )
    await _quiet_for_a_while(stack, [pid])
    assert await sync_open_payments(stack.engine, stack.settings) == 1
    assert await _sync_rows(stack, [pid]) == {pid: 3}


async def test_the_unsent_rule_is_a_constraint_too(quiet_stack: Stack) -> None:
    """Two senders that both saw no pending row still leave one (the partial unique index
    behind `unless_pending`), and a plain `send` is never deduplicated."""
    stack = quiet_stack
    pid = str(uuid.uuid4())
    payload = {
        "payment_id": pid,
        "order_id": "cdb_nothing",
        "order_expires_at": "2026-11-27T00:00:00+05:30",
        "source": "sync",
    }

    async def once(conn: AsyncConnection) -> bool:
        sent = await outbox.send(
            conn,
            "payment.processing",
            "payment.sync",
            payload,
            correlation_id=pid,
            unless_pending=True,
            in_flight_s=60,
        )
        return sent is not None

    async with stack.engine.connect() as first:
        await first.begin()
        assert await once(first)
        # A second sender while the first has not committed: its NOT EXISTS cannot see the
        # first row, so only the unique index can stop it; it waits on the first ...
        second = asyncio.create_task(in_transaction(stack.engine, once))
        await asyncio.sleep(0.3)
        assert not second.done(), "the second sender did not wait on the first's row"
        await first.commit()
    # ... and, once that committed, writes nothing.
    assert await second is False
    await in_transaction(
        stack.engine,
        lambda conn: outbox.send(
            conn, "payment.processing", "payment.sync", payload, correlation_id=pid
        ),
    )
    rows = await stack.scalar(
        "SELECT count(*) FROM outbox WHERE body::jsonb ->> 'correlation_id' = :p", p=pid
    )
    keyed = await stack.scalar(
        "SELECT count(*) FROM outbox WHERE dedupe_key = :k", k=f"payment.sync:{pid}"
    )
    assert (rows, keyed) == (2, 1)


async def _exhaust_get_order(stack: Stack, order_id: str) -> int:
    """Use up this minute's `get order` calls (the sandbox profile at 0.05: 3 a minute);
    Cashfree's hint for the next call, in seconds."""
    r = await stack.sandbox.patch(
        "/_sandbox/rate-limits", json={"profile": "sandbox", "multiplier": 0.05}
    )
    assert r.status_code == 200, r.text
    for _ in range(3):
        ok = await stack.sandbox.get(f"/pg/orders/{order_id}")
        assert ok.status_code == 200, ok.text
    return await _next_hint(stack, order_id)


async def _next_hint(stack: Stack, order_id: str) -> int:
    limited = await stack.sandbox.get(f"/pg/orders/{order_id}")
    assert limited.status_code == 429, limited.text
    return int(limited.headers["x-ratelimit-retry"])


async def _limits_off(stack: Stack) -> None:
    r = await stack.sandbox.patch("/_sandbox/rate-limits", json={"profile": "off", "multiplier": 1})
    assert r.status_code == 200, r.text


async def _clear_backoff(stack: Stack) -> None:
    await in_transaction(stack.engine, backoff.clear)


async def test_a_forced_sync_under_a_429_answers_503_at_once_and_the_job_backs_off(
    quiet_stack: Stack,
) -> None:
    stack = quiet_stack
    tok = stack.token()
    order = await stack.buy(tok)
    pid = order["id"]
    finance = {"Authorization": f"Bearer {stack.token('finance-1', Role.finance_admin)}"}
    await _clear_backoff(stack)
    try:
        hint_before = await _exhaust_get_order(stack, order["order_id"])
        assert 50 <= hint_before <= 60  # a long one: the window is a minute
        started = time.monotonic()
        r = await stack.api.post(f"/v1/payments/{pid}/sync", headers=finance)
        elapsed = time.monotonic() - started
        hint_after = await _next_hint(stack, order["order_id"])
        # Answered at once (the client used to sleep 3 x 60 s here) ...
        assert elapsed < 2.0, f"the sync route waited {elapsed:.1f} s"
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        retry_after = int(r.headers["Retry-After"])
        assert hint_after <= retry_after <= hint_before
        body = r.json()
        assert (body["status"], body["code"], body["retry_after_s"]) == (
            503,
            "gateway_rate_limited",
            retry_after,
        )
        assert body["detail"] == (
            "Cashfree is rate-limiting us; nothing was changed: ask again after Retry-After seconds"
        )
        # ... nothing was applied ...
        assert (await stack.payment(tok, pid))["status"] == "ACTIVE"
        assert await _sync_counts(stack, [pid]) == [0]
        # ... and the API's client recorded the back-off for the scheduler.
        async with stack.engine.connect() as conn:
            noted = await backoff.active(conn)
            span = await conn.scalar(
                text("SELECT extract(epoch FROM until - last_seen_at) FROM gateway_backoff")
            )
        assert noted is not None
        assert (noted.op, noted.retry_after_s, float(span)) == (
            "fetch_order",
            retry_after,
            float(retry_after),
        )
        # The sync job announces nothing while it lasts, and claims nothing either.
        await _quiet_for_a_while(stack, [pid])
        assert await sync_open_payments(stack.engine, stack.settings) == 0
        assert await _sync_counts(stack, [pid]) == [0]
        assert await _sync_rows(stack, [pid]) == {}
    finally:
        await _limits_off(stack)
        await _clear_backoff(stack)
    # Over (cleared by hand here; by the clock otherwise): the payment is announced.
    assert await sync_open_payments(stack.engine, stack.settings) >= 1
    assert await _sync_rows(stack, [pid]) == {pid: 1}


async def test_a_consumer_hands_a_429_to_the_retry_ladder_without_sleeping(
    stack: Stack,
) -> None:
    """payment.processing meeting a 429 (hint ~60 s) is retried by the ladder at once; the
    worker's client records the back-off; once Cashfree lets us, a retry settles it."""
    tok = stack.token()
    await stack.faults(webhook_drop_rate=1.0)
    order = await stack.buy(tok)
    await stack.pay(order)  # paid at Cashfree; the webhook never comes
    retried = QUEUE_RETRIED.labels("payment.processing")
    await _clear_backoff(stack)
    try:
        hint = await _exhaust_get_order(stack, order["order_id"])
        assert 50 <= hint <= 60
        before = retried._value.get()
        started = time.monotonic()
        # The message the sync job sends for it.
        await in_transaction(
            stack.engine,
            lambda conn: outbox.send(
                conn,
                "payment.processing",
                "payment.sync",
                {
                    "payment_id": order["id"],
                    "order_id": order["order_id"],
                    "order_expires_at": order["order_expires_at"],
                    "source": "sync",
                },
                correlation_id=order["id"],
            ),
        )
        while retried._value.get() == before:
            assert time.monotonic() - started < 5, "the message was never retried"
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        await _limits_off(stack)
        assert elapsed < 2.0, f"the consumer waited {elapsed:.1f} s on the 429"
        async with stack.engine.connect() as conn:
            noted = await backoff.active(conn)
        assert noted is not None and noted.op == "fetch_order"
        assert hint - 2 <= noted.retry_after_s <= hint
        # A later rung of the ladder (0.2, 0.4, 0.8 s) finds Cashfree willing again.
        done = await stack.wait_status(tok, order["id"], {"CREDITED"})
        assert done["credits_granted"] == 3200
    finally:
        await _limits_off(stack)
        await _clear_backoff(stack)
