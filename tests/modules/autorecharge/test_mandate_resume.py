"""A crash between deciding and charging, on a stack with no worker (its steps run by hand):
the request redelivered after it resumes the same charge at Cashfree, never a second; and a
mandate revoked between the two steps sends the recharge to the checkout link."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.factory import cashfree_client, subscriptions_client
from commdesk_billing.modules.autorecharge import requests
from commdesk_billing.modules.autorecharge.model import RechargeStatus
from commdesk_billing.modules.mandates import service as mandates
from tests.harness.stack import Stack, StackFactory
from tests.modules.autorecharge.mandate_helpers import (
    approved_mandate,
    auth,
    debit,
    decisions,
    enable,
    member,
    point_webhooks,
    recharges,
    sandbox_charges,
)

pytestmark = pytest.mark.slow


async def _approved(stack: Stack, tok: str) -> dict[str, str]:
    m = await approved_mandate(stack, tok)
    async with subscriptions_client(stack.settings) as subs:  # no worker: asked by hand
        active = await mandates.refresh(stack.engine, subs, uuid.UUID(m["id"]))
    assert active.status.value == "active"
    return dict(m)


async def _requested(stack: Stack, wid: str) -> uuid.UUID:
    [r] = await recharges(stack, wid)
    assert r.status == "requested"
    return uuid.UUID(str(r.id))


async def test_a_crash_after_deciding_resumes_the_same_charge(
    stacks: StackFactory,
) -> None:
    stack = await stacks(worker=False)
    await point_webhooks(stack)
    tok, wid = await member(stack, 300)
    m = await _approved(stack, tok)
    await enable(stack, tok, wid, m["id"])
    await debit(stack, tok, wid, 150)
    rid = await _requested(stack, wid)

    # Step 1 committed, then the process died before Cashfree was asked.
    plan = await in_transaction(
        stack.engine, lambda conn: requests.decide(conn, stack.settings, rid)
    )
    assert isinstance(plan, requests.MandatePlan) and str(plan.mandate_id) == m["id"]
    assert [r.status for r in await recharges(stack, wid)] == ["opening"]
    assert await sandbox_charges(stack, m["subscription_id"]) == []

    async with (
        cashfree_client(stack.settings) as client,
        subscriptions_client(stack.settings) as subs,
    ):
        for _ in range(3):  # the redelivered request, and more of them
            got = await requests.execute(
                stack.engine, client, stack.settings, rid, subs_client=subs
            )
            assert got in (RechargeStatus.pending, RechargeStatus.notified)
    [charge] = await sandbox_charges(stack, m["subscription_id"])
    [r] = await recharges(stack, wid)
    order_id = await stack.scalar("SELECT order_id FROM payments WHERE id = :p", p=r.payment_id)
    assert charge["payment_id"] == order_id
    assert (await stack.wallet(tok))["pending_credits"] == 1500
    # Charged once (and notified at once when the notice's webhook was in first: with no
    # worker, step 3 is what saw it).
    found = [d["decision"] for d in await decisions(stack, tok, wid)]
    assert found in (["fired", "charge_raised"], ["fired", "charge_raised", "notified"])


async def test_a_mandate_revoked_between_the_steps_falls_back_to_checkout(
    stacks: StackFactory,
) -> None:
    stack = await stacks(worker=False)
    await point_webhooks(stack)
    tok, wid = await member(stack, 300)
    m = await _approved(stack, tok)
    await enable(stack, tok, wid, m["id"])
    await debit(stack, tok, wid, 150)
    rid = await _requested(stack, wid)
    plan = await in_transaction(
        stack.engine, lambda conn: requests.decide(conn, stack.settings, rid)
    )
    assert isinstance(plan, requests.MandatePlan)
    # The member revokes before the charge is raised.
    r = await stack.api.post(f"/v1/mandates/{m['id']}/revoke", headers=auth(tok))
    assert r.status_code == 200, r.text

    async with (
        cashfree_client(stack.settings) as client,
        subscriptions_client(stack.settings) as subs,
    ):
        got = await requests.execute(stack.engine, client, stack.settings, rid, subs_client=subs)
        assert got is RechargeStatus.pending
        again = await requests.execute(stack.engine, client, stack.settings, rid, subs_client=subs)
        assert again is RechargeStatus.pending
    assert await sandbox_charges(stack, m["subscription_id"]) == []
    [rc] = await recharges(stack, wid)
    payment = await stack.payment(tok, str(rc.payment_id))
    assert payment["channel"] == "order"
    found = [(d["decision"], d["reason"]) for d in await decisions(stack, tok, wid)]
    assert found == [
        ("fired", None),
        ("fired", "mandate_unusable_checkout"),
        ("checkout_opened", None),
    ]


async def test_a_charge_raised_before_a_pause_is_resumed_not_replaced_by_checkout(
    stacks: StackFactory,
) -> None:
    """The charge reached Cashfree but its answer was lost (the process died before step 3);
    the payer paused the mandate before the redelivery. The charge is still live at Cashfree
    (a resume debits it): the recharge must wait on it, never open a checkout order too."""
    stack = await stacks(worker=False)
    await point_webhooks(stack)
    tok, wid = await member(stack, 300)
    m = await _approved(stack, tok)
    await enable(stack, tok, wid, m["id"])
    await debit(stack, tok, wid, 150)
    rid = await _requested(stack, wid)
    plan = await in_transaction(
        stack.engine, lambda conn: requests.decide(conn, stack.settings, rid)
    )
    assert isinstance(plan, requests.MandatePlan)
    async with subscriptions_client(stack.settings) as subs:
        # Step 2 as the dead worker ran it: the charge raised under the recharge's key.
        raised = await mandates.charge(
            stack.engine,
            subs,
            stack.settings,
            plan.mandate_id,
            key=f"recharge:{rid}",
            pack_code=plan.pack_code,
            amount_paise=plan.amount_paise,
            actor=requests.ACTOR,
            schedule=plan.schedule,
        )
        r = await stack.sandbox.post(f"/_sandbox/subscriptions/{m['subscription_id']}/pause")
        assert r.status_code == 200, r.text
        paused = await mandates.refresh(stack.engine, subs, uuid.UUID(m["id"]))
        assert paused.status.value == "paused"
    assert [r.status for r in await recharges(stack, wid)] == ["opening"]

    async with (
        cashfree_client(stack.settings) as client,
        subscriptions_client(stack.settings) as subs,
    ):
        got = await requests.execute(stack.engine, client, stack.settings, rid, subs_client=subs)
    assert got in (RechargeStatus.pending, RechargeStatus.notified)
    [rc] = await recharges(stack, wid)
    assert rc.payment_id == raised.id  # the live charge, not a second payment
    opened = await stack.scalar(
        "SELECT count(*) FROM payments WHERE user_id = :u AND channel = 'order'",
        u=raised.user_id,
    )
    assert opened == 0
    [charge] = await sandbox_charges(stack, m["subscription_id"])
    assert charge["payment_id"] == raised.order_id


async def test_a_schedule_date_refused_is_asked_for_the_next_day_once(
    stacks: StackFactory,
) -> None:
    """Cashfree's clock a day ahead of ours: the schedule date fixed at deciding is refused,
    the next day's is raised under its own key; the refused attempt is a CANCELLED row that
    nothing counts, and redeliveries raise no second charge."""
    stack = await stacks(worker=False)
    await point_webhooks(stack)
    tok, wid = await member(stack, 300)
    m = await _approved(stack, tok)
    await enable(stack, tok, wid, m["id"])
    await debit(stack, tok, wid, 150)
    rid = await _requested(stack, wid)
    plan = await in_transaction(
        stack.engine, lambda conn: requests.decide(conn, stack.settings, rid)
    )
    assert isinstance(plan, requests.MandatePlan)
    r = await stack.sandbox.post("/_sandbox/clock", json={"advance_seconds": 86_400})
    assert r.status_code == 200, r.text

    async with (
        cashfree_client(stack.settings) as client,
        subscriptions_client(stack.settings) as subs,
    ):
        for _ in range(3):  # and redelivered
            got = await requests.execute(
                stack.engine, client, stack.settings, rid, subs_client=subs
            )
            assert got in (RechargeStatus.pending, RechargeStatus.notified)
    [charge] = await sandbox_charges(stack, m["subscription_id"])
    [rc] = await recharges(stack, wid)
    order_id = await stack.scalar("SELECT order_id FROM payments WHERE id = :p", p=rc.payment_id)
    assert charge["payment_id"] == order_id
    assert charge["payment_schedule_date"].startswith(
        (plan.schedule + timedelta(days=1)).isoformat()
    )
    cancelled = await stack.scalar(
        "SELECT count(*) FROM payments WHERE channel = 'mandate' AND status = 'CANCELLED'"
    )
    assert cancelled == 1
    assert (await stack.wallet(tok))["pending_credits"] == 1500
