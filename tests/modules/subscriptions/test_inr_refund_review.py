"""Refunds of INR subscription payments under races and for money a plan change left
`unapplied`, and `ledger verify` catching a period refund posted to the wrong account: end
to end over the sandbox's Subscriptions refund API, the worker and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import verify_ledger
from tests.harness.databases import tamper
from tests.harness.stack import Stack
from tests.modules.refunds.mandate_helpers import inr_legs
from tests.modules.subscriptions import inr_support as t

pytestmark = pytest.mark.slow

DEARER = 49_900  # ₹499, GST inclusive (the mandates' maximum is ₹500)


async def _on_first_period(stack: Stack, tok: str) -> tuple[dict[str, Any], str]:
    m = await t.mandate(stack, tok)
    plan = await t.inr_plan(stack)
    sid = str((await t.subscribe(stack, tok, plan, m["id"]))["id"])
    await t.renew(stack, sid)
    done = await t.debit(stack, tok, await t.payment_of(stack, sid, 1, 1))
    assert done["status"] == "CREDITED"
    return plan, sid


async def _all_verified(stack: Stack) -> None:
    report = await verify_ledger(stack.engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_finance_refunds_racing_never_take_more_than_the_period_paid(inr: Stack) -> None:
    tok = inr.token()
    _plan, sid = await _on_first_period(inr, tok)
    pid = await t.payment_of(inr, sid, 1, 1)
    share = t.PRICE * 6 // 10
    made = await asyncio.gather(
        inr.refund(pid, amount_paise=share, key=uuid.uuid4().hex),
        inr.refund(pid, amount_paise=share, key=uuid.uuid4().hex),
    )
    assert sorted(r.status_code for r in made) == [202, 422], [r.text for r in made]
    refused = next(r for r in made if r.status_code == 422)
    assert refused.json()["refundable_paise"] == t.PRICE - share
    won = next(r for r in made if r.status_code == 202).json()
    await inr.wait_refund(won["id"], {"SUCCESS"})
    rest = await inr.refund(pid)
    assert rest.status_code == 202 and rest.json()["amount_paise"] == t.PRICE - share
    await inr.wait_refund(rest.json()["id"], {"SUCCESS"})
    assert (
        await inr.scalar("SELECT refund_amount_paise FROM payments WHERE id = :p", p=uuid.UUID(pid))
        == t.PRICE
    )
    await _all_verified(inr)


async def test_an_unapplied_upgrade_charge_is_refunded_by_finance(inr: Stack) -> None:
    """The member cancels while the upgrade's charge is notified: Cashfree still debits it,
    the change is `unapplied`, "for finance to refund": finance can, from subscription
    revenue and GST payable (where `subscription.paid` put it), and the books agree."""
    tok = inr.token()
    _plan, sid = await _on_first_period(inr, tok)
    dearer = await t.inr_plan(inr, name="Pro India Plus", price_paise=DEARER)
    r = await inr.api.post(
        f"/v1/subscriptions/{sid}/change",
        json={"plan_code": dearer["code"]},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 200, r.text
    await t.renew(inr, sid)
    pid = (await t.read(inr, tok, sid))["pending_change"]["payment_id"]
    r = await inr.api.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": False},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 200, r.text
    paid = await t.debit(inr, tok, pid)
    assert paid["status"] == "CREDITED"
    [late] = (await t.read(inr, tok, sid))["plan_changes"]
    assert (late["status"], late["payment_id"]) == ("unapplied", pid)

    refund = await inr.refund(pid, reason="upgrade charged after the member cancelled")
    assert refund.status_code == 202, refund.text
    assert refund.json()["amount_paise"] == paid["amount_paise"]
    done = await inr.wait_refund(refund.json()["id"], {"SUCCESS"})
    legs = await inr_legs(inr, done["id"])
    assert legs["inr:subscription_revenue"] == done["taxable_paise"]
    assert legs["inr:gateway_clearing"] == -paid["amount_paise"]
    over = await inr.refund(pid, amount_paise=100)
    assert over.status_code == 422 and over.json()["refundable_paise"] == 0, over.text

    async def credit_notes() -> Any:
        return await inr.scalar(
            "SELECT count(*) FROM invoices WHERE payment_id = :p AND kind = 'credit_note'",
            p=uuid.UUID(pid),
        )

    await t.until(credit_notes, 1)
    await _all_verified(inr)


async def test_verify_catches_a_period_refund_posted_to_deferred_revenue(inr: Stack) -> None:
    """A period refund's taxable value taken out of deferred revenue (credits' money) instead
    of subscription revenue still balances; `refund_subscription_periods` names it."""
    tok = inr.token()
    _plan, sid = await _on_first_period(inr, tok)
    pid = await t.payment_of(inr, sid, 1, 1)
    r = await inr.refund(pid, amount_paise=10_000)
    assert r.status_code == 202, r.text
    done = await inr.wait_refund(r.json()["id"], {"SUCCESS"})
    await _all_verified(inr)
    move = """
        UPDATE ledger_entries e SET account_id = $1
          FROM ledger_journals j
         WHERE j.id = e.journal_id AND j.idempotency_key = $3 AND e.account_id = $2"""
    key = f"refund:{done['id']}:inr"
    url = str(inr.settings.database_url)
    revenue, deferred = House.SUBSCRIPTION_REVENUE, House.DEFERRED_REVENUE
    await tamper(url, move, deferred, revenue, key, tables=("ledger_entries",))
    try:
        report = await verify_ledger(inr.engine)
    finally:
        await tamper(url, move, revenue, deferred, key, tables=("ledger_entries",))
    assert ("refund_subscription_periods", f"refund {done['id']}") in {
        (f.check, f.subject) for f in report.findings
    }
    await _all_verified(inr)
