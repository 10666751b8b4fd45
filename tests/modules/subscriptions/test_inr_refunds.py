"""Refunds of INR subscription periods' payments (charged on the member's mandate), end to end:
finance refunds a paid period (in part, then the rest) or money no period took
(`unapplied`); Cashfree Subscriptions' refund API in the sandbox makes it; the subscription
and its periods are not touched (the rule in `subscriptions/refunds.py`); the books move
subscription revenue and GST back to refunds payable, then out of gateway clearing, and
`ledger verify` agrees."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.money import half_up
from commdesk_billing.security.jwt import Role
from tests.harness.stack import Stack
from tests.modules.refunds.mandate_helpers import inr_legs, sandbox_refund
from tests.modules.subscriptions import inr_support as t

pytestmark = pytest.mark.slow

LEAD = 3 * t.DAY  # the settings' default `subscription_inr_lead_s`


async def _paid_first_period(stack: Stack, tok: str) -> str:
    m = await t.mandate(stack, tok)
    plan = await t.inr_plan(stack)
    sid = str((await t.subscribe(stack, tok, plan, m["id"]))["id"])
    await t.renew(stack, sid)
    done = await t.debit(stack, tok, await t.payment_of(stack, sid, 1, 1))
    assert done["status"] == "CREDITED"
    return sid


async def _all_verified(stack: Stack) -> None:
    report = await verify_ledger(stack.engine)
    assert report.ok, [str(f) for f in report.findings]


async def _figures(stack: Stack, pid: str) -> dict[str, Any]:
    row = await stack.scalar(
        "SELECT json_build_object('amount', amount_paise, 'taxable', taxable_paise, "
        "'cgst', cgst_paise, 'sgst', sgst_paise, 'igst', igst_paise, "
        "'subscription_id', subscription_id) FROM payments WHERE id = :p",
        p=uuid.UUID(pid),
    )
    return dict(row)


async def test_a_paid_period_is_refunded_in_parts_and_the_period_stays(inr: Stack) -> None:
    tok = inr.token()
    sid = await _paid_first_period(inr, tok)
    pid = await t.payment_of(inr, sid, 1, 1)
    before = await t.read(inr, tok, sid)
    paid = await _figures(inr, pid)
    assert paid["amount"] == t.PRICE

    # Service revenue: only finance refunds it (support refunds credits, not this).
    support = inr.token("support-1", Role.support)
    refused = await inr.refund(pid, amount_paise=10_000, tok=support)
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == "only finance_admin refunds a subscription payment"

    first = await inr.refund(pid, amount_paise=10_000)
    assert first.status_code == 202, first.text
    a = first.json()
    assert (a["amount_paise"], a["base_credits"], a["bonus_credits"]) == (10_000, 0, 0)
    assert a["taxable_paise"] == half_up(10_000 * paid["taxable"], paid["amount"])
    assert a["taxable_paise"] + a["cgst_paise"] + a["sgst_paise"] + a["igst_paise"] == 10_000
    a = await inr.wait_refund(a["id"], {"SUCCESS"})
    at_cf = await sandbox_refund(inr, paid["subscription_id"], a["refund_ref"])
    assert (at_cf["refund_status"], at_cf["refund_amount"]) == ("SUCCESS", 100.0)
    assert await inr_legs(inr, a["id"]) == {
        "inr:subscription_revenue": a["taxable_paise"],
        "inr:gst_payable": 10_000 - a["taxable_paise"],
        "inr:refunds_payable": 0,
        "inr:gateway_clearing": -10_000,
    }
    finance = inr.token("finance-1", Role.finance_admin)
    listed = await inr.api.get(
        f"/v1/payments/{pid}/refunds", headers={"Authorization": f"Bearer {finance}"}
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["refundable_paise"] == t.PRICE - 10_000
    # The rest (no amount: all that is left), then nothing more.
    rest = await inr.refund(pid)
    assert rest.status_code == 202 and rest.json()["amount_paise"] == t.PRICE - 10_000
    b = await inr.wait_refund(rest.json()["id"], {"SUCCESS"})
    for part in ("taxable", "cgst", "sgst", "igst"):
        assert a[f"{part}_paise"] + b[f"{part}_paise"] == paid[part], part
    over = await inr.refund(pid, amount_paise=100)
    assert over.status_code == 422 and over.json()["refundable_paise"] == 0, over.text
    assert await inr.scalar(
        "SELECT refunded AND refund_amount_paise = :a FROM payments WHERE id = :p",
        a=t.PRICE,
        p=uuid.UUID(pid),
    )

    # The period and the subscription are as they were: served to the period's end.
    after = await t.read(inr, tok, sid)
    assert (after["status"], after["current_period"], after["current_period_end"]) == (
        before["status"],
        before["current_period"],
        before["current_period_end"],
    )
    assert after["status"] == "active"
    assert await t.attempts(inr, sid) == [(1, 1, "paid", "CREDITED")]

    async def credit_notes() -> Any:
        return await inr.scalar(
            "SELECT count(*) FROM invoices WHERE payment_id = :p AND kind = 'credit_note'",
            p=uuid.UUID(pid),
        )

    await t.until(credit_notes, 2)
    await _all_verified(inr)
    await _all_verified(inr)


async def test_unapplied_money_is_refunded_and_a_failed_refund_posts_nothing(
    inr: Stack,
) -> None:
    """A renewal charge debited after the member asked to stop: no period took it
    (`unapplied`). Finance refunds it; a first attempt Cashfree fails changes nothing."""
    tok = inr.token()
    sid = await _paid_first_period(inr, tok)
    p1 = await t.read(inr, tok, sid)
    await t.advance_to(inr, t.plus(p1["current_period_end"], -LEAD + t.HOUR))
    await t.renew(inr, sid)
    pid = await t.payment_of(inr, sid, 2, 1)
    r = await inr.api.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": True},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 200, r.text
    assert (await t.debit(inr, tok, pid))["status"] == "CREDITED"
    assert await t.attempts(inr, sid) == [
        (1, 1, "paid", "CREDITED"),
        (2, 1, "unapplied", "CREDITED"),
    ]

    failed = await inr.refund(pid, reason="FAILED")
    assert failed.status_code == 202, failed.text
    await inr.wait_refund(failed.json()["id"], {"CANCELLED"})
    assert await inr_legs(inr, failed.json()["id"]) == {}
    whole = await inr.refund(pid, reason="charged after the member cancelled")
    assert whole.status_code == 202 and whole.json()["amount_paise"] == t.PRICE, whole.text
    done = await inr.wait_refund(whole.json()["id"], {"SUCCESS"})
    paid = await _figures(inr, pid)
    assert await inr_legs(inr, done["id"]) == {
        "inr:subscription_revenue": paid["taxable"],
        "inr:gst_payable": t.PRICE - paid["taxable"],
        "inr:refunds_payable": 0,
        "inr:gateway_clearing": -t.PRICE,
    }
    kept = await t.read(inr, tok, sid)
    assert (kept["status"], kept["current_period"], kept["cancel_at_period_end"]) == (
        "active",
        1,
        True,
    )
    assert await t.attempts(inr, sid) == [
        (1, 1, "paid", "CREDITED"),
        (2, 1, "unapplied", "CREDITED"),
    ]
    await _all_verified(inr)
    # The check can fail: the failed refund shown as made took nothing out of subscription
    # revenue (and is put back after).
    fid = uuid.UUID(failed.json()["id"])
    await inr.execute("UPDATE refunds SET status = 'SUCCESS' WHERE id = :r", r=fid)
    try:
        report = await verify_ledger(inr.engine)
    finally:
        await inr.execute("UPDATE refunds SET status = 'CANCELLED' WHERE id = :r", r=fid)
    assert ("refund_subscription_periods", f"refund {fid}") in {
        (f.check, f.subject) for f in report.findings
    }
    await _all_verified(inr)
