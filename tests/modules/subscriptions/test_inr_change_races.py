"""INR plan changes under races and crashes (sandbox + API + worker, the sandbox's clock):
what happens when the member acts between the renewal job's decision and its charge, when
the job runs twice at once, and what `ledger verify` sees of a plan switched without its
payment."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from typing import Any

import pytest

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.payments.jobs import sync_open_payments
from commdesk_billing.modules.subscriptions import inr as renewal_inr
from commdesk_billing.modules.subscriptions import inr_change
from tests.harness.stack import Stack
from tests.modules.subscriptions import inr_support as t

pytestmark = pytest.mark.slow

LEAD = 3 * t.DAY
DEARER = 49_900


async def _on_first_period(stack: Stack, tok: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    m = await t.mandate(stack, tok)
    plan = await t.inr_plan(stack)
    sid = (await t.subscribe(stack, tok, plan, m["id"]))["id"]
    await t.renew(stack, sid)
    done = await t.debit(stack, tok, await t.payment_of(stack, sid, 1, 1))
    assert done["status"] == "CREDITED"
    return m, plan, sid


async def _upgrade(stack: Stack, tok: str, sid: str, plan_code: str) -> dict[str, Any]:
    r = await stack.api.post(
        f"/v1/subscriptions/{sid}/change",
        json={"plan_code": plan_code},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _decide(stack: Stack, sid: str) -> renewal_inr.Decision:
    at = await t.sandbox_now(stack)
    return await in_transaction(
        stack.engine, lambda c: renewal_inr.decide(c, uuid.UUID(sid), at, LEAD)
    )


async def _subscription_payments(stack: Stack, sid: str) -> int:
    """Payments of kind `subscription` of the subscription's member, beyond period 1's."""
    n = await stack.scalar(
        """SELECT count(*) FROM payments y JOIN subscriptions s ON s.user_id = y.user_id
            WHERE s.id = :s AND y.kind = 'subscription'""",
        s=uuid.UUID(sid),
    )
    return int(n) - 1


async def test_a_cancel_between_the_renewals_decision_and_its_raise_charges_nothing(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    """The renewal job decides to raise an upgrade's charge (under the row lock, then let
    go); the member cancels now before the job writes the payment: the change is failed, so
    no charge may be raised for it (it would be a payment of no period and no change, which
    the crediting cannot place)."""
    tok = inr.token()
    m, _plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    await _upgrade(inr, tok, sid, dearer["code"])
    decision = await _decide(inr, sid)
    assert decision.step is renewal_inr.Step.raise_change and decision.change is not None
    r = await inr.api.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": False},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 200, r.text
    await inr_change.raise_charge(
        inr.engine, inr_client, inr.settings, decision.change, await t.sandbox_now(inr)
    )
    charges = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert [c.payment_amount_paise for c in charges] == [t.PRICE]
    assert await _subscription_payments(inr, sid) == 0
    [change] = (await t.read(inr, tok, sid))["plan_changes"]
    assert change["status"] == "failed"
    await t.books_agree(inr)


async def test_the_renewal_job_twice_at_once_raises_one_upgrade_charge(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m, _plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    await _upgrade(inr, tok, sid, dearer["code"])
    await asyncio.gather(t.renew(inr, sid), t.renew(inr, sid), t.renew(inr, sid))
    charges = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert len(charges) == 2
    assert await _subscription_payments(inr, sid) == 1
    pid = (await t.read(inr, tok, sid))["pending_change"]["payment_id"]
    assert (await t.debit(inr, tok, pid))["status"] == "CREDITED"
    after = await t.read(inr, tok, sid)
    assert after["plan_code"] == dearer["code"]
    assert [c["status"] for c in after["plan_changes"]] == ["applied"]
    await t.books_agree(inr)


async def test_verify_finds_a_plan_switched_without_its_payment(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    """Tampered books: the subscription is put on the dearer plan while its upgrade's charge
    is still only raised (nothing paid); or the change is marked applied on that unpaid
    payment. `ledger verify` names both."""
    tok = inr.token()
    _m, plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    await _upgrade(inr, tok, sid, dearer["code"])
    await t.renew(inr, sid)
    assert (await t.read(inr, tok, sid))["pending_change"]["status"] == "raised"
    await t.books_agree(inr)
    await inr.execute(
        "UPDATE subscriptions SET plan_code = :c, plan_version = :v WHERE id = :s",
        c=dearer["code"],
        v=dearer["version"],
        s=uuid.UUID(sid),
    )
    switched = await t.verify(inr)
    assert {f.check for f in switched.findings} == {"subscription_plan_unpaid"}, [
        str(f) for f in switched.findings
    ]
    await inr.execute(
        "UPDATE subscription_plan_changes SET status = 'applied' WHERE subscription_id = :s",
        s=uuid.UUID(sid),
    )
    applied = await t.verify(inr)
    assert {f.check for f in applied.findings} == {"subscription_plan_change_payment"}
    # (Put back: the stack's books are verified when it stops.)
    await inr.execute(
        "UPDATE subscription_plan_changes SET status = 'raised' WHERE subscription_id = :s",
        s=uuid.UUID(sid),
    )
    await inr.execute(
        "UPDATE subscriptions SET plan_code = :c, plan_version = :v WHERE id = :s",
        c=plan["code"],
        v=plan["version"],
        s=uuid.UUID(sid),
    )
    await t.books_agree(inr)


async def test_a_mandate_revoked_between_the_change_and_its_charge_fails_the_change(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m, plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    await _upgrade(inr, tok, sid, dearer["code"])
    r = await inr.sandbox.post(f"/_sandbox/subscriptions/{m['subscription_id']}/revoke")
    assert r.status_code == 200, r.text
    await t.wait_mandate(inr, tok, m["id"], "revoked")
    await t.renew(inr, sid)
    after = await t.read(inr, tok, sid)
    assert after["plan_code"] == plan["code"] and after["pending_change"] is None
    [change] = after["plan_changes"]
    assert change["status"] == "failed" and change["payment_id"] is None, change
    charges = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert [c.payment_amount_paise for c in charges] == [t.PRICE]
    await t.books_agree(inr)


async def test_a_lost_answer_to_the_upgrade_charge_is_found_and_charged_once(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    """Cashfree made the upgrade's charge but its answer was lost (the payment left
    CREATED, the change `raised`): the renewal runs again, the sync finds the charge; one
    charge, one payment, the plan switched once."""
    tok = inr.token()
    m, _plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    await _upgrade(inr, tok, sid, dearer["code"])
    await inr.faults(error_rate=1.0)
    try:
        await t.renew(inr, sid)
    finally:
        await inr.faults(error_rate=0.0)
    change = (await t.read(inr, tok, sid))["pending_change"]
    assert change["status"] == "raised"
    pid = change["payment_id"]
    p = await inr.payment(tok, pid)
    assert p["status"] == "CREATED"
    await inr_client.create_charge(
        subscription_id=m["subscription_id"],
        payment_id=p["order_id"],
        amount_paise=p["amount_paise"],
        schedule_date=date.fromisoformat(p["schedule_date"]),
        remarks="CommDesk subscription",
    )
    await t.renew(inr, sid)
    await t.renew(inr, sid)

    async def synced() -> Any:  # the status sync's runs
        await sync_open_payments(inr.engine, inr.settings)
        return (await inr.payment(tok, pid))["status"]

    await t.until(synced, "ACTIVE")
    assert (await t.debit(inr, tok, pid))["status"] == "CREDITED"
    charges = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert len(charges) == 2
    assert await _subscription_payments(inr, sid) == 1
    after = await t.read(inr, tok, sid)
    assert after["plan_code"] == dearer["code"]
    assert [c["status"] for c in after["plan_changes"]] == ["applied"]
    await t.books_agree(inr)


async def test_a_free_upgrade_under_a_rupee_is_not_taken_for_an_unpaid_switch(
    inr: Stack,
) -> None:
    """An upgrade whose prorated price is under ₹1 is applied at once with no charge: the
    books still agree (it is logged, so verify tells it from a switch without its payment)."""
    tok = inr.token()
    _m, _plan, sid = await _on_first_period(inr, tok)
    nearly = await t.inr_plan(inr, name="Pro India Plus", price_paise=t.PRICE + 50)
    body = await _upgrade(inr, tok, sid, nearly["code"])
    assert (body["direction"], body["prorated_paise"]) == ("upgrade", 0)
    after = await t.read(inr, tok, sid)
    assert (after["plan_code"], after["plan_changes"]) == (nearly["code"], [])
    await t.books_agree(inr)


async def test_a_cancel_between_the_renewals_decision_and_a_periods_raise_charges_nothing(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    """As for an upgrade: the renewal job has written period 2's attempt and let go of the
    row lock; the member cancels now (period 2 voided) before the job raises the charge:
    nothing may be charged on the cancelled subscription."""
    tok = inr.token()
    m, _plan, sid = await _on_first_period(inr, tok)
    first = await t.read(inr, tok, sid)
    await t.advance_to(inr, t.plus(first["current_period_end"], -LEAD + t.HOUR))
    decision = await _decide(inr, sid)
    assert decision.step is renewal_inr.Step.raise_charge and decision.attempt is not None
    r = await inr.api.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": False},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 200, r.text
    await renewal_inr.raise_charge(
        inr.engine, inr_client, inr.settings, decision.attempt, await t.sandbox_now(inr)
    )
    charges = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert [c.payment_amount_paise for c in charges] == [t.PRICE]
    assert await _subscription_payments(inr, sid) == 0
    await t.books_agree(inr)


async def test_an_upgrade_whose_charge_is_held_for_review_does_not_stop_the_renewal(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    """The upgrade's charge is found at Cashfree for another amount: its payment goes to
    REVIEW, where nothing ever credits it. The change must end (the old plan stays) rather
    than keep the renewal waiting for good: else the next period is never charged and the
    subscription never lapses (served for nothing)."""
    tok = inr.token()
    m, plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    await _upgrade(inr, tok, sid, dearer["code"])
    await inr.faults(error_rate=1.0)
    try:
        await t.renew(inr, sid)  # the CHARGE call's answer is lost: the payment CREATED
    finally:
        await inr.faults(error_rate=0.0)
    pid = (await t.read(inr, tok, sid))["pending_change"]["payment_id"]
    p = await inr.payment(tok, pid)
    await inr_client.create_charge(
        subscription_id=m["subscription_id"],
        payment_id=p["order_id"],
        amount_paise=p["amount_paise"] + 100,
        schedule_date=date.fromisoformat(p["schedule_date"]),
    )

    async def reviewed() -> Any:
        await sync_open_payments(inr.engine, inr.settings)
        return (await inr.payment(tok, pid))["status"]

    await t.until(reviewed, "REVIEW")
    first = await t.read(inr, tok, sid)
    await t.advance_to(inr, t.plus(first["current_period_end"], -LEAD + t.HOUR))
    await t.renew(inr, sid)
    after = await t.read(inr, tok, sid)
    assert after["plan_code"] == plan["code"]
    [change] = after["plan_changes"]
    assert change["status"] == "failed", change
    assert [p["number"] for p in after["periods"]] == [1, 2]
    await t.books_agree(inr)


async def test_the_same_key_twice_at_once_makes_one_change(inr: Stack) -> None:
    tok = inr.token()
    _m, _plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    headers = t.auth(tok, key=True)

    async def change() -> tuple[int, Any]:
        r = await inr.api.post(
            f"/v1/subscriptions/{sid}/change", json={"plan_code": dearer["code"]}, headers=headers
        )
        return r.status_code, r.json()

    answers = await asyncio.gather(change(), change(), change())
    assert 200 in {s for s, _ in answers}, answers
    assert {s for s, _ in answers} <= {200, 409}, answers
    assert len((await t.read(inr, tok, sid))["plan_changes"]) == 1


async def test_a_downgrade_an_upgrade_over_it_then_a_downgrade_back(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    """A downgrade waits for the renewal; an upgrade asked meanwhile is charged from the
    current plan and, once paid, replaces the waiting downgrade; a downgrade asked after it
    prices the next period. One charge per step, and the books agree."""
    tok = inr.token()
    m, plan, sid = await _on_first_period(inr, tok)
    lite = await t.inr_plan(inr, name="Lite India", price_paise=19_900)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    down = await _upgrade(inr, tok, sid, lite["code"])
    assert down["direction"] == "downgrade"
    up = await _upgrade(inr, tok, sid, dearer["code"])
    assert up["direction"] == "upgrade" and 19_000 < up["prorated_paise"] <= DEARER - t.PRICE
    await t.renew(inr, sid)
    pid = (await t.read(inr, tok, sid))["pending_change"]["payment_id"]
    assert (await t.debit(inr, tok, pid))["status"] == "CREDITED"
    on_plus = await t.read(inr, tok, sid)
    assert on_plus["plan_code"] == dearer["code"]
    back = await _upgrade(inr, tok, sid, plan["code"])
    assert back["direction"] == "downgrade"
    await t.books_agree(inr)
    await t.advance_to(inr, t.plus(on_plus["current_period_end"], -LEAD + t.HOUR))
    await t.renew(inr, sid)
    p2 = await inr.payment(tok, await t.payment_of(inr, sid, 2, 1))
    assert p2["amount_paise"] == t.PRICE
    assert (await t.debit(inr, tok, p2["id"]))["status"] == "CREDITED"
    renewed = await t.read(inr, tok, sid)
    assert (renewed["plan_code"], renewed["current_period"]) == (plan["code"], 2)
    charges = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert [c.payment_amount_paise for c in charges] == [t.PRICE, up["prorated_paise"], t.PRICE]
    await t.books_agree(inr)


async def test_a_mandate_paused_before_the_upgrades_debit_fails_the_change(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m, plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    r = await inr.sandbox.post(
        f"/_sandbox/subscriptions/{m['subscription_id']}/charge-outcome",
        json={"outcome": "paused"},
    )
    assert r.status_code == 200, r.text
    await _upgrade(inr, tok, sid, dearer["code"])
    await t.renew(inr, sid)
    pid = (await t.read(inr, tok, sid))["pending_change"]["payment_id"]
    ended = await t.debit(inr, tok, pid)
    assert ended["status"] in ("FAILED", "CANCELLED"), ended
    await t.renew(inr, sid)
    after = await t.read(inr, tok, sid)
    assert (after["plan_code"], after["pending_change"]) == (plan["code"], None)
    assert [c["status"] for c in after["plan_changes"]] == ["failed"]
    await t.books_agree(inr)


async def test_an_upgrade_not_raised_before_its_period_ended_is_not_charged(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    """The renewal job did not run between the upgrade and the period's end (an outage):
    the prorated price was for the rest of a period now over, so it is not raised; the
    change fails, and the next period is charged on the plan the member is on."""
    tok = inr.token()
    m, plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    await _upgrade(inr, tok, sid, dearer["code"])
    first = await t.read(inr, tok, sid)
    await t.advance_to(inr, t.plus(first["current_period_end"], t.HOUR))
    await t.renew(inr, sid)
    after = await t.read(inr, tok, sid)
    [change] = after["plan_changes"]
    assert (change["status"], change["payment_id"]) == ("failed", None), change
    charges = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert [c.payment_amount_paise for c in charges] == [t.PRICE, t.PRICE]
    assert after["periods"][1]["plan_code"] == plan["code"]
    await t.books_agree(inr)
