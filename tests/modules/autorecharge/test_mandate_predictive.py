"""The predictive level with the sandbox's clock: a wallet burning at a steady rate is asked
early enough that its charge (the pre-debit notice, then the debit at least 24 h later and
not before the next day) is credited before the balance would reach zero; with the plain
threshold it would not be. And the runaway detector on the mandate branch."""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction

import pytest

from commdesk_billing.modules.payments.jobs import sync_open_payments
from tests.harness.stack import StackFactory
from tests.modules.autorecharge.mandate_helpers import (
    active_mandate as approved,
)
from tests.modules.autorecharge.mandate_helpers import (
    advance_to,
    auth,
    debit,
    debit_time,
    enable,
    grant,
    mandate_stack,
    member,
    recharges,
    sandbox_charges,
    sandbox_now,
    until,
    until_decision,
)

pytestmark = pytest.mark.slow

WEEK_S = 7 * 86_400  # the burn window (BILLING_AUTO_RECHARGE_BURN_WINDOW_S default)


async def test_the_predictive_level_is_credited_before_the_wallet_runs_dry(
    stacks: StackFactory,
) -> None:
    stack = await mandate_stack(stacks)
    lead_s = (
        stack.settings.auto_recharge_notice_s
        + stack.settings.auto_recharge_earliest_debit_s
        + stack.settings.auto_recharge_margin_s
    )
    assert stack.settings.auto_recharge_burn_window_s == WEEK_S
    threshold = 100
    burned = 7000  # the last week's consumption: a steady 7000 / 168 h ≈ 41.7 credits/h
    rate = Fraction(burned, WEEK_S)  # credits per second
    tok, wid = await member(stack, burned + 2600)
    await debit(stack, tok, wid, burned)  # the history, before auto-recharge is on
    m = await approved(stack, tok)
    cfg = await enable(stack, tok, wid, m["id"], threshold=threshold)
    level = cfg["trigger_level"]
    # level = ceil(D * L / W): 60 h of this burn, far above the member's 100.
    assert level == -(-burned * lead_s // WEEK_S) == 2500
    assert cfg["burn_credits_per_hour"] == 42

    await debit(stack, tok, wid, 50)  # 2550: above the level
    assert await recharges(stack, wid) == []
    await debit(stack, tok, wid, 60)  # 2490: across it
    notified = await until_decision(stack, tok, wid, "notified")
    [r] = await recharges(stack, wid)
    asked_at: datetime = r.created_at
    payment = await stack.payment(tok, notified["data"]["payment_id"])
    debit_at = debit_time(payment)
    waited_s = Fraction(int((debit_at - asked_at).total_seconds()))
    # The debit falls a day or more after the request (the notice's 24 h, the next day; the
    # sandbox's clock and the database's differ by a moment).
    assert waited_s >= 24 * 3600 - 60
    available_at_request = 2490
    projected = available_at_request - rate * waited_s
    assert projected > 0, f"the predictive level left {projected} credits at the debit"
    # The plain threshold: asked only at 100, the wallet would be dry long before.
    assert threshold - rate * waited_s < 0

    # The charge is credited at the debit time, while the wallet still holds credits.
    await advance_to(stack, debit_at + timedelta(minutes=5))
    await stack.wait_status(tok, payment["id"], {"CREDITED"})
    await until_decision(stack, tok, wid, "succeeded")
    seen = await stack.wallet(tok)
    assert (seen["available_credits"], seen["pending_credits"]) == (2490 + 1500, 0)
    assert await sandbox_now(stack) >= debit_at


async def test_the_runaway_detector_stops_the_mandate_branch(
    stacks: StackFactory,
) -> None:
    """At most one recharge in the window: a second request is refused as a runaway, before
    anything is charged on the mandate."""
    stack = await mandate_stack(
        stacks,
        auto_recharge_runaway_max=1,
        auto_recharge_cooldown_s=0,
        auto_recharge_backoff_s=0,
    )
    tok, wid = await member(stack, 300)
    m = await approved(stack, tok)
    await enable(stack, tok, wid, m["id"])
    await debit(stack, tok, wid, 150)
    await until_decision(stack, tok, wid, "charge_raised")
    # The payer revokes at the bank: the open charge fails, so does the recharge.
    r = await stack.sandbox.post(f"/_sandbox/subscriptions/{m['subscription_id']}/revoke")
    assert r.status_code == 200, r.text

    async def first() -> str:
        await sync_open_payments(stack.engine, stack.settings)
        return str((await recharges(stack, wid))[0].status)

    await until(first, "failed")
    # Back above the level, then across it again: the runaway guard says no.
    await grant(stack, wid, 100)
    await debit(stack, tok, wid, 60)
    runaway = await until_decision(stack, tok, wid, "runaway", "too_many_recharges")
    assert runaway["data"] == {
        "recharges": 1,
        "window_s": stack.settings.auto_recharge_runaway_window_s,
    }
    assert [x.status for x in await recharges(stack, wid)] == ["failed", "skipped"]
    assert len(await sandbox_charges(stack, m["subscription_id"])) == 1
    events = await stack.api.get(f"/v1/wallets/{wid}/auto-recharge/events", headers=auth(tok))
    assert events.json()["data"][0]["decision"] == "runaway"
