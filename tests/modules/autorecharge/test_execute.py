"""Executing a request against the Cashfree sandbox (a stack with no worker: the tests run
the consumer's work, the payment's verification and crediting, and the settle job by hand,
each the real code): one order per request, pending credits shown then cleared, and every
guard, each recorded in the decision log."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.factory import cashfree_client
from commdesk_billing.modules.autorecharge import outcomes, requests
from commdesk_billing.modules.autorecharge.model import RechargeStatus
from commdesk_billing.modules.notifications import service
from commdesk_billing.modules.notifications.catalog import CATALOG
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments import verification
from commdesk_billing.modules.payments.crediting import credit_payment
from commdesk_billing.modules.payments.state import Status
from commdesk_billing.modules.wallet import service as ws
from tests.harness.stack import Stack
from tests.modules.autorecharge.conftest import (
    Member,
    cross,
    decisions,
    enable,
    member,
    recharges,
    rows,
)

pytestmark = pytest.mark.slow  # each drives the sandbox's checkout


async def execute(stack: Stack, recharge_id: uuid.UUID, **config: Any) -> RechargeStatus | None:
    settings = stack.settings.model_copy(update=config)
    async with cashfree_client(settings) as client:
        return await requests.execute(stack.engine, client, settings, recharge_id)


async def payment_of(stack: Stack, recharge_id: uuid.UUID) -> Any:
    found = await rows(
        stack.engine, "SELECT payment_id FROM auto_recharges WHERE id = :r", r=recharge_id
    )
    payment_id = found[0][0]
    return await in_transaction(stack.engine, lambda c: payments.get(c, payment_id))


async def checkout(stack: Stack, recharge_id: uuid.UUID, outcome: str, **config: Any) -> Status:
    """The member pays (or fails to) on the sandbox's page; the payment is verified with
    Cashfree's answer and, when paid, credited: what the worker would do."""
    p = await payment_of(stack, recharge_id)
    page = {
        "checkout_url": payments.checkout_url(stack.settings, p),
        "payment_session_id": p.payment_session_id,
    }
    await stack.pay(page, "upi", outcome)
    wanted = {Status.PAID} if outcome == "success" else {Status.FAILED}
    deadline = time.monotonic() + 20
    status: Status | None = None
    async with cashfree_client(stack.settings) as client:
        while time.monotonic() < deadline:
            truth = await verification.fetch_truth(client, p.order_id, p.order_expires_at)

            async def apply(conn: AsyncConnection, truth: Any = truth) -> Status:
                return await verification.apply_truth(
                    conn, stack.settings, p.id, truth, source="manual"
                )

            status = await in_transaction(stack.engine, apply)
            if status in wanted:
                break
            await asyncio.sleep(0.1)
    assert status in wanted, status
    if status is Status.PAID:
        await in_transaction(stack.engine, lambda c: credit_payment(c, p.id))
        status = Status.CREDITED
    await outcomes.settle_pending(stack.engine, stack.settings.model_copy(update=config))
    return status


async def failed_once(stack: Stack, m: Member, **config: Any) -> None:
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid, **config) is RechargeStatus.pending
    await checkout(stack, rid, "failure", **config)


async def wallet(stack: Stack, m: Member) -> Any:
    return await in_transaction(stack.engine, lambda c: ws.get_wallet(c, m.wallet.id))


async def test_a_request_opens_one_order_whose_credits_show_pending_until_credited(
    quiet_stack: Stack,
) -> None:
    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m)
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid) is RechargeStatus.pending
    assert await execute(stack, rid) is RechargeStatus.pending  # a redelivery: nothing new
    orders = await rows(
        stack.engine,
        "SELECT status, pack_code, metadata->>'requested_by' AS by, base_credits + bonus_credits"
        " AS credits FROM payments WHERE wallet_id = :w",
        w=m.wallet.id,
    )
    assert [tuple(o) for o in orders] == [("ACTIVE", "pack_150", "system:auto-recharge", 1500)]
    assert (await wallet(stack, m)).pending_credits == 1500
    log = await rows(
        stack.engine,
        "SELECT decision, data FROM auto_recharge_events WHERE recharge_id = :r ORDER BY id",
        r=rid,
    )
    assert [d for d, _ in log] == ["fired", "checkout_opened"]
    opened = log[1][1]
    assert opened["credits"] == 1500 and opened["amount_paise"] == 15000
    assert opened["checkout_url"].endswith(
        f"payment_session_id={(await payment_of(stack, rid)).payment_session_id}"
    )
    before = (await wallet(stack, m)).available_credits
    assert await checkout(stack, rid, "success") is Status.CREDITED
    after = await wallet(stack, m)
    assert (after.pending_credits, after.available_credits) == (0, before + 1500)
    assert [(r.status, r.credits) for r in await recharges(stack.engine, m.wallet.id)] == [
        ("succeeded", 1500)
    ]
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("succeeded", None)
    # Cooldown: a crossing right after a success buys nothing.
    rid2 = await cross(stack.engine, m)
    assert await execute(stack, rid2) is RechargeStatus.skipped
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("skipped", "cooldown")


async def test_a_failure_clears_the_pending_credits_and_backs_off(quiet_stack: Stack) -> None:
    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m)
    await failed_once(stack, m)
    w = await wallet(stack, m)
    assert w.pending_credits == 0
    assert [r.status for r in await recharges(stack.engine, m.wallet.id)] == ["failed"]
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("failed", "payment_failed")
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid) is RechargeStatus.skipped
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("backed_off", "failure_backoff")
    settings = await rows(
        stack.engine,
        "SELECT consecutive_failures, backoff_until > now() + interval '50 minutes'"
        " FROM auto_recharge_settings WHERE wallet_id = :w",
        w=m.wallet.id,
    )
    assert tuple(settings[0]) == (1, True)  # the first back-off: the base, an hour


async def test_n_failures_in_a_row_turn_auto_recharge_off(quiet_stack: Stack) -> None:
    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m, max_consecutive_failures=2)
    await failed_once(stack, m, auto_recharge_backoff_s=0)
    await failed_once(stack, m, auto_recharge_backoff_s=0)
    w = await wallet(stack, m)
    assert (w.auto_recharge_enabled, w.auto_recharge_trigger) == (False, None)
    assert (await decisions(stack.engine, m.wallet.id))[-2:] == [
        ("failed", "payment_failed"),
        ("disabled", "consecutive_failures"),
    ]
    # The member's notices: the first failure will be retried, the last one will not (it
    # turned auto-recharge off), and the failed notice must not promise a retry.
    bodies = await rows(
        stack.engine,
        "SELECT body FROM outbox WHERE message_type = 'auto_recharge.failed'"
        " AND queue = 'notifications.billing' AND body LIKE :w ORDER BY id",
        w=f"%{m.wallet.id}%",
    )
    retry_at = [json.loads(b.body)["payload"]["retry_at"] for b in bodies]
    assert retry_at[0] is not None and retry_at[1] is None
    last = json.loads(bodies[1].body)["payload"]
    notice = service.rendered(
        "auto_recharge.failed", CATALOG["auto_recharge.failed"].payload.model_validate(last)
    )
    assert "It will not be retried automatically." in notice.text
    # Off: a crossing writes nothing at all.
    await ws_debit_across(stack, m)
    assert len(await recharges(stack.engine, m.wallet.id)) == 2


async def ws_debit_across(stack: Stack, m: Member) -> None:
    from tests.modules.autorecharge.conftest import debit, top_up

    await top_up(stack.engine, m.wallet.id, 500)
    w = await wallet(stack, m)
    await debit(stack.engine, m.wallet.id, w.available_credits - 10)


async def test_the_daily_count_cap(quiet_stack: Stack) -> None:
    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m, max_recharges_per_day=1)
    await failed_once(stack, m, auto_recharge_backoff_s=0)
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid, auto_recharge_backoff_s=0) is RechargeStatus.skipped
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("capped", "daily_count")


async def test_the_monthly_amount_cap(quiet_stack: Stack) -> None:
    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m, max_paise_per_month=20_000)
    await failed_once(stack, m, auto_recharge_backoff_s=0)  # 15 000 of it used
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid, auto_recharge_backoff_s=0) is RechargeStatus.skipped
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("capped", "monthly_amount")


async def test_the_runaway_detector(quiet_stack: Stack) -> None:
    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m, max_consecutive_failures=10)
    fast = {"auto_recharge_backoff_s": 0, "auto_recharge_runaway_max": 2}
    await failed_once(stack, m, **fast)
    await failed_once(stack, m, **fast)
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid, **fast) is RechargeStatus.skipped
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("runaway", "too_many_recharges")


async def test_the_kill_switch_pauses_every_request(quiet_stack: Stack) -> None:
    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m)
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid, auto_recharge_enabled=False) is RechargeStatus.skipped
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("skipped", "paused")
    assert (
        await rows(stack.engine, "SELECT 1 FROM payments WHERE wallet_id = :w", w=m.wallet.id) == []
    )


async def test_a_member_who_turned_it_off_is_skipped(quiet_stack: Stack) -> None:
    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m)
    rid = await cross(stack.engine, m)
    await enable(stack.engine, stack.settings, m, enabled=False)
    assert await execute(stack, rid) is RechargeStatus.skipped
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("skipped", "disabled")
    w = await wallet(stack, m)
    assert (w.auto_recharge_enabled, w.auto_recharge_trigger) == (False, None)


async def test_a_failure_is_asked_again_once_when_its_backoff_is_over(quiet_stack: Stack) -> None:
    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m)
    await failed_once(stack, m, auto_recharge_backoff_s=0)  # still below its level
    await outcomes.retry_due(stack.engine)
    await outcomes.retry_due(stack.engine)  # once per failure
    assert [r.status for r in await recharges(stack.engine, m.wallet.id)] == [
        "failed",
        "requested",
    ]
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("fired", "retry_after_backoff")
    rid = (await recharges(stack.engine, m.wallet.id))[-1].id
    assert await execute(stack, rid) is RechargeStatus.pending


async def test_a_wallet_back_above_its_level_is_not_asked_again(quiet_stack: Stack) -> None:
    from tests.modules.autorecharge.conftest import top_up

    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m)
    await failed_once(stack, m, auto_recharge_backoff_s=0)
    await top_up(stack.engine, m.wallet.id, 1000)
    await outcomes.retry_due(stack.engine)
    assert [r.status for r in await recharges(stack.engine, m.wallet.id)] == ["failed"]


async def test_verify_catches_pending_credits_no_recharge_explains(
    scratch_engine: AsyncEngine,
) -> None:
    from sqlalchemy import text

    from commdesk_billing.modules.autorecharge import invariants
    from commdesk_billing.modules.ledger.verify import verify_ledger

    m = await member(scratch_engine, 300)
    assert (await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))).ok
    async with scratch_engine.begin() as conn:
        await conn.execute(
            text("UPDATE wallets SET pending_credits = 1500 WHERE id = :w"), {"w": m.wallet.id}
        )
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert [(f.check, f.subject) for f in report.findings] == [
        ("auto_recharge_pending", f"wallet {m.wallet.id}")
    ]


async def test_verify_catches_a_wallet_whose_auto_recharge_disagrees_with_its_settings(
    scratch_engine: AsyncEngine, settings: Any
) -> None:
    from sqlalchemy import text

    from commdesk_billing.modules.autorecharge import invariants
    from commdesk_billing.modules.ledger.verify import verify_ledger

    on = await member(scratch_engine, 300)
    await enable(scratch_engine, settings, on)
    off = await member(scratch_engine, 300)
    assert (await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))).ok
    async with scratch_engine.begin() as conn:
        # The settings turned off without the wallet (its crossing would still fire), and a
        # wallet turned on that has no settings at all.
        await conn.execute(
            text("UPDATE auto_recharge_settings SET enabled = false WHERE wallet_id = :w"),
            {"w": on.wallet.id},
        )
        await conn.execute(
            text("UPDATE wallets SET auto_recharge_enabled = true WHERE id = :w"),
            {"w": off.wallet.id},
        )
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert sorted((f.check, f.subject) for f in report.findings) == sorted(
        [
            ("auto_recharge_pending", f"wallet {on.wallet.id}"),
            ("auto_recharge_pending", f"wallet {off.wallet.id}"),
        ]
    )


async def test_a_recharge_that_leaves_the_wallet_below_its_level_is_followed_by_another(
    quiet_stack: Stack,
) -> None:
    """A predictive level above what one pack brings: once the recharge is credited the
    wallet is still below its level, so no debit crosses it again. The levels job asks once
    more when the cooldown is over (never within it)."""
    from commdesk_billing.modules.autorecharge.predict import recompute_levels
    from tests.modules.autorecharge.conftest import debit

    stack = quiet_stack
    m = await member(stack.engine, 40_000)
    await debit(stack.engine, m.wallet.id, 33_600)  # 200 an hour: a level of 12 000
    assert (await enable(stack.engine, stack.settings, m)).trigger_level == 12_000
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid) is RechargeStatus.pending
    await debit(stack.engine, m.wallet.id, 10_990)  # 1 000 left while the member pays
    assert await checkout(stack, rid, "success") is Status.CREDITED
    w = await wallet(stack, m)
    assert w.available_credits == 2_500 and w.auto_recharge_trigger is not None
    assert w.available_credits < w.auto_recharge_trigger
    await recompute_levels(stack.engine, stack.settings)  # within the cooldown: nothing
    assert [r.status for r in await recharges(stack.engine, m.wallet.id)] == ["succeeded"]
    later = stack.settings.model_copy(update={"auto_recharge_cooldown_s": 0})
    await recompute_levels(stack.engine, later)
    await recompute_levels(stack.engine, later)  # once: the request is in flight
    assert [r.status for r in await recharges(stack.engine, m.wallet.id)] == [
        "succeeded",
        "requested",
    ]
    assert (await decisions(stack.engine, m.wallet.id))[-1] == ("fired", "still_below_level")


async def test_a_crash_after_the_order_opened_resumes_it_whatever_the_member_changed(
    quiet_stack: Stack,
) -> None:
    """Step 2 opened the order, then the worker died before step 3; the member changed the
    phone before the message came back. The redelivery must resume that order (the one the
    member may pay), not fail the recharge on a request that no longer matches it."""
    from commdesk_billing.modules.autorecharge.requests import ACTOR, Plan, decide
    from commdesk_billing.modules.payments import ordering

    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m)
    rid = await cross(stack.engine, m)
    plan = await in_transaction(stack.engine, lambda c: decide(c, stack.settings, rid))
    assert isinstance(plan, Plan)
    buyer = ordering.Buyer.system(ACTOR, plan.subject, f"recharge:{rid}")
    async with cashfree_client(stack.settings) as client:
        answer = await ordering.open_order(stack.engine, client, stack.settings, buyer, plan.order)
    await enable(stack.engine, stack.settings, m, customer_phone="9123456780")
    assert await execute(stack, rid) is RechargeStatus.pending
    found = await recharges(stack.engine, m.wallet.id)
    assert [(r.status, str(r.payment_id)) for r in found] == [("pending", answer.body["id"])]
    assert (await wallet(stack, m)).pending_credits == 1500
    orders = await rows(stack.engine, "SELECT id FROM payments WHERE wallet_id = :w", w=m.wallet.id)
    assert len(orders) == 1


async def test_a_refund_after_a_recharge_that_lifted_the_wallet_asks_nothing(
    quiet_stack: Stack,
) -> None:
    """Only a success that left the wallet below its level is followed by another ask: a
    member refunding the recharge's credits afterwards must not be sold them again."""
    from commdesk_billing.modules.autorecharge.predict import recompute_levels
    from commdesk_billing.modules.wallet.refunds import reserve_for_refund

    stack = quiet_stack
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m)
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid) is RechargeStatus.pending
    assert await checkout(stack, rid, "success") is Status.CREDITED
    assert (await wallet(stack, m)).available_credits == 1_690  # above its level of 200
    (lot,) = await rows(
        stack.engine,
        "SELECT id FROM credit_lots WHERE wallet_id = :w AND source = 'purchase'"
        " ORDER BY granted_at DESC LIMIT 1",
        w=m.wallet.id,
    )
    await in_transaction(
        stack.engine,
        lambda c: reserve_for_refund(
            c,
            wallet_id=m.wallet.id,
            takes=[(lot.id, 1_500)],
            idempotency_key=f"refund-test:{uuid.uuid4()}",
            reason="refund",
            refund_ref="test",
        ),
    )
    assert (await wallet(stack, m)).available_credits == 190
    later = stack.settings.model_copy(update={"auto_recharge_cooldown_s": 0})
    await recompute_levels(stack.engine, later)
    assert [r.status for r in await recharges(stack.engine, m.wallet.id)] == ["succeeded"]


async def test_every_event_parses_as_the_notifications_catalog_reads_it(
    quiet_stack: Stack,
) -> None:
    """What auto-recharge announces to notifications.billing is what the catalog parses:
    the low-balance notice, the checkout link, a success, a failure and the switch-off."""
    from commdesk_billing.modules.notifications.catalog import CATALOG
    from commdesk_billing.queues.envelope import decode

    stack = quiet_stack
    ok = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, ok)
    rid = await cross(stack.engine, ok)
    assert await execute(stack, rid) is RechargeStatus.pending
    assert await checkout(stack, rid, "success") is Status.CREDITED
    bad = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, bad, max_consecutive_failures=1)
    await failed_once(stack, bad)
    seen: dict[str, int] = {}
    for w in (ok, bad):
        found = await rows(
            stack.engine,
            "SELECT message_type, body FROM outbox WHERE queue = 'notifications.billing'"
            " AND body LIKE :w AND (message_type LIKE 'auto_recharge.%'"
            " OR message_type = 'wallet.low_balance') ORDER BY id",
            w=f"%{w.wallet.id}%",
        )
        for message_type, body in found:
            spec = CATALOG[message_type]
            envelope = decode(body.encode())
            payload = spec.payload.model_validate(envelope.payload)
            assert spec.view(payload) and spec.identity(payload, envelope)
            seen[message_type] = seen.get(message_type, 0) + 1
    assert seen == {
        "wallet.low_balance": 2,
        "auto_recharge.checkout_opened": 2,
        "auto_recharge.succeeded": 1,
        "auto_recharge.failed": 1,
        "auto_recharge.disabled": 1,
    }


async def test_with_cashfrees_own_checkout_the_link_is_the_members_payment_page(
    quiet_stack: Stack,
) -> None:
    """In production Cashfree's checkout is opened by its JS SDK (no checkout URL of ours):
    the member is sent our payment page for the order, never an event without a link (the
    notifications catalog refuses it, and the member would never be told)."""
    from commdesk_billing.modules.notifications.catalog import CATALOG
    from commdesk_billing.queues.envelope import decode

    stack = quiet_stack
    page = "https://app.example.test/billing/pay/{payment_id}"
    prod = {"cashfree_checkout_url": None, "auto_recharge_checkout_url": page}
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings.model_copy(update=prod), m)
    rid = await cross(stack.engine, m)
    assert await execute(stack, rid, **prod) is RechargeStatus.pending
    (body,) = await rows(
        stack.engine,
        "SELECT body FROM outbox WHERE queue = 'notifications.billing'"
        " AND message_type = 'auto_recharge.checkout_opened' AND body LIKE :w",
        w=f"%{m.wallet.id}%",
    )
    envelope = decode(body[0].encode())
    payload = CATALOG["auto_recharge.checkout_opened"].payload.model_validate(envelope.payload)
    p = await payment_of(stack, rid)
    assert payload.checkout_url == f"https://app.example.test/billing/pay/{p.id}"


async def test_no_link_to_send_refuses_to_set_it_up(quiet_stack: Stack) -> None:
    from commdesk_billing.errors import AutoRechargeInvalid

    stack = quiet_stack
    m = await member(stack.engine, 300)
    nowhere = stack.settings.model_copy(update={"cashfree_checkout_url": None})
    with pytest.raises(AutoRechargeInvalid, match="checkout link"):
        await enable(stack.engine, nowhere, m)


async def test_the_settle_job_reaches_a_newer_recharge_behind_a_page_of_waiting_ones(
    quiet_stack: Stack,
) -> None:
    # A reviewer's find: the job read only the oldest `limit` pending recharges, and a
    # mandate's charge waits a day or more, so those could all be waiting while a newer
    # recharge whose payment was credited stayed pending (its credits shown as pending).
    stack = quiet_stack
    waiting: list[uuid.UUID] = []
    for _ in range(2):
        older = await member(stack.engine, 300)
        await enable(stack.engine, stack.settings, older)
        rid = await cross(stack.engine, older)
        assert await execute(stack, rid) is RechargeStatus.pending
        waiting.append(rid)
    m = await member(stack.engine, 300)
    await enable(stack.engine, stack.settings, m)
    newest = await cross(stack.engine, m)
    assert await execute(stack, newest) is RechargeStatus.pending
    p = await payment_of(stack, newest)
    page = {
        "checkout_url": payments.checkout_url(stack.settings, p),
        "payment_session_id": p.payment_session_id,
    }
    await stack.pay(page, "upi", "success")
    async with cashfree_client(stack.settings) as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            truth = await verification.fetch_truth(client, p.order_id, p.order_expires_at)

            async def apply(conn: AsyncConnection, truth: Any = truth) -> Status:
                return await verification.apply_truth(
                    conn, stack.settings, p.id, truth, source="manual"
                )

            if await in_transaction(stack.engine, apply) is Status.PAID:
                break
            await asyncio.sleep(0.1)
    await in_transaction(stack.engine, lambda c: credit_payment(c, p.id))
    # One recharge a page: the two older ones (still waiting) come first.
    assert await outcomes.settle_pending(stack.engine, stack.settings, limit=1) >= 1
    assert [r.status for r in await recharges(stack.engine, m.wallet.id)] == ["succeeded"]
    assert (await wallet(stack, m)).pending_credits == 0
    states = await rows(
        stack.engine,
        "SELECT status FROM auto_recharges WHERE id = ANY(CAST(:ids AS uuid[]))",
        ids=waiting,
    )
    assert {s for (s,) in states} == {"pending"}
