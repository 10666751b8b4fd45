"""Auto-recharge charged on a UPI AutoPay mandate, end to end over real HTTP: our API, the
worker, the Cashfree sandbox's Subscriptions (its signed webhooks, its clock). The 24 h
pre-debit rule is crossed by moving the sandbox's clock, never by sleeping."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from commdesk_billing.security.timestamps import IST
from tests.harness.stack import StackFactory
from tests.modules.autorecharge.mandate_helpers import (
    HOUR,
    active_mandate,
    advance,
    advance_to,
    announced,
    debit,
    debit_time,
    decisions,
    enable,
    mandate_stack,
    member,
    recharges,
    sandbox_charges,
    sandbox_now,
    until,
    until_decision,
)

pytestmark = pytest.mark.slow


async def test_threshold_crossed_notified_then_credited_once(
    stacks: StackFactory,
) -> None:
    stack = await mandate_stack(stacks)
    tok, wid = await member(stack, 300)
    m = await active_mandate(stack, tok)
    cfg = await enable(stack, tok, wid, m["id"], pack_code="pack_300")
    assert (cfg["mandate_id"], cfg["trigger_level"]) == (m["id"], 200)

    await debit(stack, tok, wid, 100)  # 200: not below the level yet
    assert await recharges(stack, wid) == []
    await debit(stack, tok, wid, 50)  # 150: across it

    raised = await until_decision(stack, tok, wid, "charge_raised")
    assert raised["data"]["mandate_id"] == m["id"]
    assert (raised["data"]["amount_paise"], raised["data"]["credits"]) == (30_000, 3200)
    seen = await stack.wallet(tok)
    assert (seen["available_credits"], seen["pending_credits"]) == (150, 3200)
    pid = raised["data"]["payment_id"]
    payment = await stack.payment(tok, pid)
    assert (payment["channel"], payment["status"]) == ("mandate", "ACTIVE")

    # Cashfree's pre-debit notice (its signed webhook): the recharge is notified, and the
    # member is told when the debit falls.
    notified = await until_decision(stack, tok, wid, "notified")
    [r] = await recharges(stack, wid)
    assert (r.status, str(r.payment_id)) == ("notified", pid)
    payment = await stack.payment(tok, pid)
    due = debit_time(payment)
    event = {
        "recharge_id": str(r.id),
        "wallet_id": wid,
        "user_id": await stack.scalar(
            "SELECT owner_id::text FROM wallets WHERE id = :w", w=uuid.UUID(wid)
        ),
        "amount_paise": 30_000,
        "credits": 3200,
        # The day in India: 24 h after a notice sent late in the UTC evening is the day after.
        "debit_on": due.astimezone(IST).date().isoformat(),
    }
    assert notified["data"] == {**event, "payment_id": pid}
    assert await announced(stack, "auto_recharge.notified", "recharge_id", str(r.id)) == [event]
    assert (await stack.wallet(tok))["pending_credits"] == 3200

    # An hour before the debit: nothing credited, still pending.
    await advance_to(stack, due - timedelta(hours=1))
    assert (await stack.payment(tok, pid))["status"] == "ACTIVE"
    seen = await stack.wallet(tok)
    assert (seen["available_credits"], seen["pending_credits"]) == (150, 3200)

    await advance(stack, 2 * HOUR)  # past the debit time
    done = await stack.wait_status(tok, pid, {"CREDITED"})
    assert done["credits_granted"] == 3200
    await until_decision(stack, tok, wid, "succeeded")
    seen = await stack.wallet(tok)
    assert (seen["available_credits"], seen["pending_credits"]) == (3350, 0)
    [r] = await recharges(stack, wid)
    assert r.status == "succeeded"
    lots = await stack.scalar(
        "SELECT string_agg(source || ':' || credits_granted, ',' ORDER BY source) "
        "FROM credit_lots WHERE wallet_id = :w AND source IN ('purchase', 'bonus')",
        w=uuid.UUID(wid),
    )
    assert lots == "bonus:200,purchase:3000"  # the purchase lot and its bonus

    async def invoices() -> object:
        return await stack.scalar(
            "SELECT count(*) FROM invoices WHERE payment_id = :p AND kind = 'tax_invoice'",
            p=uuid.UUID(pid),
        )

    await until(invoices, 1)

    # fraud.detection takes the credited charge and has nothing to look up at PG (it once
    # asked PG for the charge's order, got a 404 and dead-lettered the event).
    async def fraud_consumed() -> object:
        return await stack.scalar(
            "SELECT count(*) FROM inbox i JOIN outbox o ON o.message_id = i.message_id"
            " WHERE i.consumer LIKE '%fraud.detection%' AND o.message_type = 'payment.credited'"
            " AND o.body LIKE :p",
            p=f"%{pid}%",
        )

    await until(fraud_consumed, 1)
    # Exactly one charge at Cashfree, credited once, whatever webhooks repeat.
    assert len(await sandbox_charges(stack, m["subscription_id"])) == 1
    assert await announced(stack, "auto_recharge.succeeded", "recharge_id", str(r.id)) != []

    # The cooldown holds on the mandate branch too: crossing again right after the success
    # charges nothing.
    await debit(stack, tok, wid, 3350 - 150)
    await until_decision(stack, tok, wid, "skipped", "cooldown")
    assert [x.status for x in await recharges(stack, wid)] == ["succeeded", "skipped"]
    assert len(await sandbox_charges(stack, m["subscription_id"])) == 1
    assert [d["decision"] for d in await decisions(stack, tok, wid)] == [
        "fired",
        "charge_raised",
        "notified",
        "succeeded",
        "fired",
        "skipped",
    ]
    assert (await sandbox_now(stack)) > due
