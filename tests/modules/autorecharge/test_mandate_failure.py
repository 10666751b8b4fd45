"""A recharge's charge failing on the mandate (UPI's retries, then FAILED): the recharge
fails at once on `mandate_charge.failed` (pending cleared, back-off), is asked again when the
back-off ends, and the retry's charge succeeds. And N failures in a row turn it off."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from commdesk_billing.modules.autorecharge import outcomes
from tests.harness.stack import StackFactory
from tests.modules.autorecharge.mandate_helpers import (
    HOUR,
    active_mandate,
    advance,
    advance_to,
    announced,
    debit,
    debit_time,
    enable,
    mandate_stack,
    member,
    recharges,
    sandbox_charges,
    until,
    until_decision,
)

pytestmark = pytest.mark.slow


async def test_a_failed_charge_backs_off_then_the_retry_succeeds(
    stacks: StackFactory,
) -> None:
    stack = await mandate_stack(stacks)
    tok, wid = await member(stack, 300)
    m = await active_mandate(stack, tok)
    sub = m["subscription_id"]
    r = await stack.sandbox.post(
        f"/_sandbox/subscriptions/{sub}/charge-outcome",
        json={"outcome": "failure", "failure_reason": "INSUFFICIENT_FUNDS"},
    )
    assert r.status_code == 200, r.text
    await enable(stack, tok, wid, m["id"])
    await debit(stack, tok, wid, 150)
    notified = await until_decision(stack, tok, wid, "notified")
    pid = notified["data"]["payment_id"]
    assert (await stack.wallet(tok))["pending_credits"] == 1500

    # The first attempt fails; UPI retries hourly, three times: still pending until then.
    await advance_to(stack, debit_time(await stack.payment(tok, pid)) + timedelta(minutes=5))
    assert (await stack.payment(tok, pid))["status"] == "ACTIVE"
    assert [x.status for x in await recharges(stack, wid)] == ["notified"]
    await advance(stack, 4 * HOUR)
    failed = await stack.wait_status(tok, pid, {"FAILED"})
    assert failed["failure_code"] == "INSUFFICIENT_FUNDS"

    # `mandate_charge.failed` fails the recharge at once (the settle job is not run here).
    decided = await until_decision(stack, tok, wid, "failed")
    assert decided["reason"] == "INSUFFICIENT_FUNDS"
    assert decided["data"]["consecutive_failures"] == 1
    [first] = await recharges(stack, wid)
    assert first.status == "failed"
    seen = await stack.wallet(tok)
    assert (seen["available_credits"], seen["pending_credits"]) == (150, 0)
    assert await announced(stack, "auto_recharge.failed", "recharge_id", str(first.id)) != []
    backoff = await stack.scalar(
        "SELECT backoff_until - now() FROM auto_recharge_settings WHERE wallet_id = :w",
        w=uuid.UUID(wid),
    )
    assert timedelta(minutes=50) < backoff <= timedelta(hours=1)

    # Within the back-off nothing is asked again…
    assert await outcomes.retry_due(stack.engine) == 0
    assert len(await recharges(stack, wid)) == 1
    # …and once it is over (the back-off's end stood in for by moving it into the past:
    # our clock is not the sandbox's), the settle job asks once more.
    await stack.execute(
        "UPDATE auto_recharge_settings SET backoff_until = now() - interval '1 second'"
        " WHERE wallet_id = :w",
        w=uuid.UUID(wid),
    )
    assert await outcomes.retry_due(stack.engine) == 1
    assert await outcomes.retry_due(stack.engine) == 0  # once per failure
    await until_decision(stack, tok, wid, "fired", "retry_after_backoff")

    async def second() -> object:
        rows = await recharges(stack, wid)
        return rows[-1].status if len(rows) == 2 else None

    await until(second, "notified")
    retry = (await recharges(stack, wid))[-1]
    rpid = str(retry.payment_id)
    assert rpid != pid
    assert (await stack.wallet(tok))["pending_credits"] == 1500
    await advance_to(stack, debit_time(await stack.payment(tok, rpid)) + timedelta(minutes=5))
    done = await stack.wait_status(tok, rpid, {"CREDITED"})
    assert done["credits_granted"] == 1500
    await until(second, "succeeded")
    seen = await stack.wallet(tok)
    assert (seen["available_credits"], seen["pending_credits"]) == (1650, 0)
    failures = await stack.scalar(
        "SELECT consecutive_failures FROM auto_recharge_settings WHERE wallet_id = :w",
        w=uuid.UUID(wid),
    )
    assert failures == 0
    statuses = sorted(c["payment_status"] for c in await sandbox_charges(stack, sub))
    assert statuses == ["FAILED", "SUCCESS"]


async def test_failures_in_a_row_turn_auto_recharge_off(stacks: StackFactory) -> None:
    """max_consecutive_failures 1: the first failed charge disables it, with the alert's
    announcement, and the trigger level is cleared."""
    stack = await mandate_stack(stacks)
    tok, wid = await member(stack, 300)
    m = await active_mandate(stack, tok)
    r = await stack.sandbox.post(
        f"/_sandbox/subscriptions/{m['subscription_id']}/charge-outcome",
        json={"outcome": "failure", "failure_reason": "INSUFFICIENT_FUNDS"},
    )
    assert r.status_code == 200, r.text
    await enable(stack, tok, wid, m["id"], max_consecutive_failures=1)
    await debit(stack, tok, wid, 150)
    notified = await until_decision(stack, tok, wid, "notified")
    pid = notified["data"]["payment_id"]
    await advance_to(stack, debit_time(await stack.payment(tok, pid)) + timedelta(hours=4))
    await stack.wait_status(tok, pid, {"FAILED"})
    await until_decision(stack, tok, wid, "disabled", "consecutive_failures")
    cfg = await stack.api.get(
        f"/v1/wallets/{wid}/auto-recharge", headers={"Authorization": f"Bearer {tok}"}
    )
    assert (cfg.json()["enabled"], cfg.json()["trigger_level"]) == (False, None)
    assert await announced(stack, "auto_recharge.disabled", "wallet_id", wid) != []
