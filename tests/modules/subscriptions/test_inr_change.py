"""Plan changes of INR subscriptions end to end (sandbox + API + worker, the sandbox's clock
moved): an upgrade's prorated price is charged on the mandate after Cashfree's pre-debit
notice and takes effect when paid; a failed charge leaves the old plan with its reason; a
plan above the mandate's maximum is refused; a downgrade takes effect at the renewal, which
charges the new plan's price from the next period."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import pytest

from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.subscriptions.model import whole_seconds
from commdesk_billing.modules.tax.gst import compute
from commdesk_billing.money import half_up
from tests.harness.stack import Stack
from tests.modules.subscriptions import inr_support as t

pytestmark = pytest.mark.slow

LEAD = 3 * t.DAY  # the settings' default `subscription_inr_lead_s`
DEARER = 49_900  # ₹499, GST inclusive (the mandates' maximum is ₹500)


async def _on_first_period(
    stack: Stack, tok: str, max_paise: int = 50_000
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """An approved mandate, an INR subscription on it (₹299), its first period paid."""
    m = await t.mandate(stack, tok, max_paise=max_paise)
    plan = await t.inr_plan(stack)
    sid = (await t.subscribe(stack, tok, plan, m["id"]))["id"]
    await t.renew(stack, sid)
    done = await t.debit(stack, tok, await t.payment_of(stack, sid, 1, 1))
    assert done["status"] == "CREDITED"
    assert (await t.read(stack, tok, sid))["status"] == "active"
    return m, plan, sid


async def _change(
    stack: Stack, tok: str, sid: str, plan_code: str, key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = t.auth(tok, key=True)
    if key is not None:
        headers["Idempotency-Key"] = key
    r = await stack.api.post(
        f"/v1/subscriptions/{sid}/change", json={"plan_code": plan_code}, headers=headers
    )
    return r.status_code, dict(r.json())


def _prorated(old: int, new: int, start: str, end: str, at: str) -> int:
    s, e, a = (datetime.fromisoformat(x) for x in (start, end, at))
    return half_up((new - old) * whole_seconds(e - a), whole_seconds(e - s))


async def test_an_upgrade_is_charged_prorated_on_the_mandate_and_applies_when_paid(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m, plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    key = uuid.uuid4().hex
    status, body = await _change(inr, tok, sid, dearer["code"], key)
    assert status == 200, body
    pending = body["subscription"]["pending_change"]
    before = body["subscription"]
    assert (body["direction"], body["effective_at"], body["prorated_credits"]) == (
        "upgrade",
        None,
        0,
    )
    # The rest of the period, at the difference of the prices, rounded half up: exact.
    amount = _prorated(
        t.PRICE,
        DEARER,
        before["current_period_start"],
        before["current_period_end"],
        pending["requested_at"],
    )
    assert body["prorated_paise"] == pending["prorated_paise"] == amount
    assert 19_000 < amount <= DEARER - t.PRICE  # asked moments into the month
    assert (pending["status"], pending["from_plan_code"], pending["to_plan_code"]) == (
        "raising",
        plan["code"],
        dearer["code"],
    )
    # Until paid, the subscription stays on its plan and shows the pending change.
    assert (before["plan_code"], before["status"]) == (plan["code"], "active")
    # The same key answers the same change; another change while it waits is refused.
    assert await _change(inr, tok, sid, dearer["code"], key) == (status, body)
    cheaper = await t.inr_plan(inr, name="Lite India", price_paise=19_900)
    status, problem = await _change(inr, tok, sid, cheaper["code"])
    assert (status, problem["code"]) == (409, "plan_change_pending")

    # The renewal job raises the charge on the mandate (once, however often it runs).
    await t.renew(inr, sid)
    await t.renew(inr, sid)
    read = await t.read(inr, tok, sid)
    [change] = read["plan_changes"]
    assert change["status"] == "raised" and read["pending_change"] == change
    pid = change["payment_id"]
    pay = await inr.payment(tok, pid)
    gst = compute(
        amount,
        rate_bp=inr.settings.gst_rate_bp,
        mode="inclusive",
        buyer_state=inr.settings.seller_state_code,
        seller_state=inr.settings.seller_state_code,
    )
    assert (pay["kind"], pay["channel"], pay["amount_paise"]) == ("subscription", "mandate", amount)
    assert (pay["taxable_paise"], pay["gst_amount_paise"]) == (gst.taxable_paise, gst.tax_paise)
    assert pay["taxable_paise"] + pay["gst_amount_paise"] == amount
    charges = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert [c.payment_amount_paise for c in charges] == [t.PRICE, amount]

    # Notice, then the debit no sooner than 24 h after it; then the new plan is in effect.
    done = await t.debit(inr, tok, pid)
    assert done["status"] == "CREDITED"
    after = await t.read(inr, tok, sid)
    assert (after["plan_code"], after["status"], after["current_period"]) == (
        dearer["code"],
        "active",
        1,
    )
    assert after["pending_change"] is None
    assert [c["status"] for c in after["plan_changes"]] == ["applied"]
    assert after["current_period_end"] == before["current_period_end"]
    legs = await inr.scalar(
        """SELECT json_object_agg(e.account_id::text, e.amount) FROM ledger_journals j
             JOIN ledger_entries e ON e.journal_id = j.id
            WHERE j.idempotency_key = :k AND j.kind = 'subscription.paid'""",
        k=f"payment:{pid}:inr",
    )
    assert legs == {
        str(House.GATEWAY_CLEARING): amount,
        str(House.SUBSCRIPTION_REVENUE): -gst.taxable_paise,
        str(House.GST_PAYABLE): -gst.tax_paise,
    }
    assert [k for k, _ in await t.events(inr, sid) if k.startswith("subscription.plan_")] == [
        "subscription.plan_change_requested",
        "subscription.plan_changed",
    ]

    # The next period is charged at the new plan's price.
    await t.advance_to(inr, t.plus(after["current_period_end"], -LEAD + t.HOUR))
    await t.renew(inr, sid)
    p2 = await inr.payment(tok, await t.payment_of(inr, sid, 2, 1))
    assert p2["amount_paise"] == DEARER
    assert (await t.debit(inr, tok, p2["id"]))["status"] == "CREDITED"
    renewed = await t.read(inr, tok, sid)
    assert (renewed["plan_code"], renewed["current_period"]) == (dearer["code"], 2)
    assert renewed["periods"][1]["price_paise"] == DEARER
    await t.books_agree(inr)


async def test_a_failed_upgrade_charge_leaves_the_old_plan_and_says_why(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m, plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    r = await inr.sandbox.post(
        f"/_sandbox/subscriptions/{m['subscription_id']}/charge-outcome",
        json={"outcome": "failure", "failure_reason": "INSUFFICIENT_FUNDS"},
    )
    assert r.status_code == 200, r.text
    status, body = await _change(inr, tok, sid, dearer["code"])
    assert status == 200, body
    await t.renew(inr, sid)
    pid = (await t.read(inr, tok, sid))["pending_change"]["payment_id"]
    failed = await t.debit(inr, tok, pid)
    assert (failed["status"], failed["failure_code"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    await t.renew(inr, sid)  # sees the payment failed
    after = await t.read(inr, tok, sid)
    assert (after["plan_code"], after["plan_version"], after["status"]) == (
        plan["code"],
        plan["version"],
        "active",
    )
    assert after["pending_change"] is None
    [change] = after["plan_changes"]
    assert (change["status"], change["failure"]) == ("failed", "payment failed: INSUFFICIENT_FUNDS")
    [failure] = [e for k, e in await t.events(inr, sid) if k == "subscription.plan_change_failed"]
    assert failure["reason"] == "payment failed: INSUFFICIENT_FUNDS"
    # No longer pending: the member may try again (a new charge under the new key).
    status, again = await _change(inr, tok, sid, dearer["code"])
    assert status == 200 and again["subscription"]["pending_change"]["status"] == "raising"
    await t.books_agree(inr)


async def test_a_plan_above_the_mandates_maximum_is_refused(inr: Stack) -> None:
    tok = inr.token()
    _m, plan, sid = await _on_first_period(inr, tok, max_paise=40_000)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    status, problem = await _change(inr, tok, sid, dearer["code"])
    assert (status, problem["code"]) == (409, "plan_change_needs_new_mandate")
    after = await t.read(inr, tok, sid)
    assert (after["plan_code"], after["plan_changes"], after["next_plan_code"]) == (
        plan["code"],
        [],
        None,
    )
    await t.renew(inr, sid)
    assert await t.attempts(inr, sid) == [(1, 1, "paid", "CREDITED")]


async def test_a_downgrade_takes_effect_at_the_renewal_with_nothing_refunded(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m, plan, sid = await _on_first_period(inr, tok)
    cheaper = await t.inr_plan(inr, name="Lite India", price_paise=19_900)
    status, body = await _change(inr, tok, sid, cheaper["code"])
    assert status == 200, body
    sub = body["subscription"]
    assert (body["direction"], body["prorated_paise"], body["effective_at"]) == (
        "downgrade",
        0,
        sub["current_period_end"],
    )
    assert (sub["plan_code"], sub["next_plan_code"], sub["pending_change"]) == (
        plan["code"],
        cheaper["code"],
        None,
    )
    # Nothing is charged or refunded now.
    await t.renew(inr, sid)
    assert len(await t.cashfree_charges(inr_client, m["subscription_id"])) == 1
    assert await inr.scalar("SELECT count(*) FROM refunds") == 0

    await t.advance_to(inr, t.plus(sub["current_period_end"], -LEAD + t.HOUR))
    await t.renew(inr, sid)
    p2 = await inr.payment(tok, await t.payment_of(inr, sid, 2, 1))
    assert p2["amount_paise"] == 19_900
    assert (await t.debit(inr, tok, p2["id"]))["status"] == "CREDITED"
    after = await t.read(inr, tok, sid)
    assert (after["plan_code"], after["next_plan_code"], after["current_period"]) == (
        cheaper["code"],
        None,
        2,
    )
    await t.books_agree(inr)


async def test_the_renewal_waits_for_an_upgrade_whose_charge_is_in_flight(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    """The next period is priced on the plan the subscription is on when it is made: while
    an upgrade's debit has not answered, the renewal raises nothing (it would charge the old
    price, then be undone or doubled by the upgrade)."""
    tok = inr.token()
    m, plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    r = await inr.sandbox.post(
        f"/_sandbox/subscriptions/{m['subscription_id']}/charge-outcome",
        json={"outcome": "pending"},
    )
    assert r.status_code == 200, r.text
    status, body = await _change(inr, tok, sid, dearer["code"])
    assert status == 200, body
    await t.renew(inr, sid)
    raised = await t.read(inr, tok, sid)
    assert raised["pending_change"]["status"] == "raised"
    await t.advance_to(inr, t.plus(raised["current_period_end"], -LEAD + t.HOUR))
    report = await t.renew(inr, sid)
    assert report.outcomes == {sid: ["charging"]}
    after = await t.read(inr, tok, sid)
    assert [p["number"] for p in after["periods"]] == [1]
    assert after["plan_code"] == plan["code"]
    assert after["pending_change"]["status"] == "raised"


async def test_no_upgrade_within_the_renewals_lead_time(inr: Stack) -> None:
    """A daily plan is always within the renewal's lead time (the next day's charge is
    raised days ahead): its upgrade is refused; its downgrade waits for the renewal."""
    tok = inr.token()
    m = await t.mandate(inr, tok)
    plan = await t.inr_plan(inr, interval_unit="day", dunning_offsets_seconds=[])
    sid = (await t.subscribe(inr, tok, plan, m["id"]))["id"]
    await t.renew(inr, sid)
    assert (await t.debit(inr, tok, await t.payment_of(inr, sid, 1, 1)))["status"] == "CREDITED"
    dearer = await t.inr_plan(inr, price_paise=DEARER, interval_unit="day")
    status, problem = await _change(inr, tok, sid, dearer["code"])
    assert (status, problem["code"]) == (409, "plan_change_refused")
    assert (await t.read(inr, tok, sid))["plan_changes"] == []


async def test_cancelling_fails_a_pending_upgrade_and_a_late_debit_is_kept_for_refund(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    """The member cancels while the upgrade's charge is notified: the change fails; the
    debit Cashfree still makes is posted and marked `unapplied` (finance refunds it), and
    the books agree."""
    tok = inr.token()
    _m, plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    status, body = await _change(inr, tok, sid, dearer["code"])
    assert status == 200, body
    await t.renew(inr, sid)
    pid = (await t.read(inr, tok, sid))["pending_change"]["payment_id"]
    r = await inr.api.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": False},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 200, r.text
    ended = await t.read(inr, tok, sid)
    assert (ended["status"], ended["plan_code"], ended["pending_change"]) == (
        "cancelled",
        plan["code"],
        None,
    )
    [change] = ended["plan_changes"]
    assert (change["status"], change["failure"]) == ("failed", "subscription ended: cancelled")
    assert (await t.debit(inr, tok, pid))["status"] == "CREDITED"
    [late] = (await t.read(inr, tok, sid))["plan_changes"]
    assert (late["status"], late["payment_id"]) == ("unapplied", pid)
    await t.books_agree(inr)


async def test_two_upgrades_at_once_make_one_change(inr: Stack) -> None:
    tok = inr.token()
    _m, _plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    other = await t.inr_plan(inr, name="Pro India Max", price_paise=45_000)
    answers = await asyncio.gather(
        _change(inr, tok, sid, dearer["code"]), _change(inr, tok, sid, other["code"])
    )
    assert sorted(s for s, _ in answers) == [200, 409]
    assert [b["code"] for s, b in answers if s == 409] == ["plan_change_pending"]
    assert len((await t.read(inr, tok, sid))["plan_changes"]) == 1


async def test_an_upgrade_on_a_revoked_mandate_asks_for_a_new_one(inr: Stack) -> None:
    tok = inr.token()
    m, _plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    r = await inr.sandbox.post(f"/_sandbox/subscriptions/{m['subscription_id']}/revoke")
    assert r.status_code == 200, r.text
    await t.wait_mandate(inr, tok, m["id"], "revoked")
    status, problem = await _change(inr, tok, sid, dearer["code"])
    assert (status, problem["code"]) == (409, "plan_change_needs_new_mandate")
    assert (await t.read(inr, tok, sid))["plan_changes"] == []
