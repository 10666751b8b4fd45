"""Subscribing to an INR plan: the first period is charged on the member's mandate, after
Cashfree's pre-debit notice and no earlier than 24 h after it; the subscription is pending
(no service) until the charge is PAID on Cashfree's API, then active from the payment, with
its revenue and GST in the books and a tax invoice. The sandbox's clock moves; nothing
sleeps for the 24 h rule."""

from __future__ import annotations

import uuid

import pytest

from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.security.jwt import Role
from tests.harness.stack import Stack
from tests.modules.subscriptions import inr_support as t

pytestmark = pytest.mark.slow


async def test_first_period_is_charged_on_the_mandate_and_paid_after_the_notice(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m = await t.mandate(inr, tok)
    plan = await t.inr_plan(inr)
    sub = await t.subscribe(inr, tok, plan, m["id"])
    sid = sub["id"]
    assert (sub["status"], sub["mandate_id"]) == ("pending", m["id"])
    [p1] = sub["periods"]
    assert (p1["status"], p1["price_paise"], p1["price_credits"]) == ("pending", t.PRICE, None)

    # The renewal job raises the first charge; run again (and at once twice), it raises none.
    await t.renew(inr, sid)
    await t.renew(inr, sid)
    assert await t.attempts(inr, sid) == [(1, 1, "raised", "ACTIVE")]
    pid = await t.payment_of(inr, sid, 1, 1)
    pay = await inr.payment(tok, pid)
    assert (pay["kind"], pay["channel"], pay["amount_paise"]) == (
        "subscription",
        "mandate",
        t.PRICE,
    )
    assert (pay["taxable_paise"], pay["gst_amount_paise"], pay["credits_granted"]) == (
        25_339,
        4_561,
        0,
    )
    charges = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert [(c.payment_id, c.payment_amount_paise) for c in charges] == [(pay["order_id"], t.PRICE)]

    done = await t.debit(inr, tok, pid)
    assert done["status"] == "CREDITED" and done["credits_granted"] == 0
    active = await t.read(inr, tok, sid)
    assert active["status"] == "active" and active["current_period"] == 1
    [paid] = active["periods"]
    assert paid["status"] == "paid" and paid["attempts"] == 1
    # Period 1 starts when it was paid, not when the member asked.
    assert paid["period_start"] == active["current_period_start"] == paid["paid_at"]
    assert t.plus(paid["period_start"], 0).month % 12 + 1 == t.plus(paid["period_end"], 0).month
    assert (await inr.wallet(tok))["available_credits"] == 0

    legs = await inr.scalar(
        """SELECT json_object_agg(e.account_id::text, e.amount) FROM ledger_journals j
             JOIN ledger_entries e ON e.journal_id = j.id
            WHERE j.idempotency_key = :k AND j.kind = 'subscription.paid'""",
        k=f"payment:{pid}:inr",
    )
    assert legs == {
        str(House.GATEWAY_CLEARING): t.PRICE,
        str(House.SUBSCRIPTION_REVENUE): -25_339,
        str(House.GST_PAYABLE): -4_561,
    }

    async def invoices() -> object:
        return await inr.scalar(
            "SELECT count(*) FROM invoices WHERE payment_id = :p AND kind = 'tax_invoice'",
            p=uuid.UUID(pid),
        )

    await t.until(invoices, 1)
    renewed = [e for k, e in await t.events(inr, sid) if k == "subscription.renewed"]
    assert [(e["period"], e["price_paise"], e["payment_id"]) for e in renewed] == [
        (1, t.PRICE, pid)
    ]
    # Finance may refund it (never taken for a sponsorship's: no escrow, no credits); the
    # period stays paid (test_inr_refunds.py has the rest).
    finance = inr.token("finance-1", Role.finance_admin)
    r = await inr.api.post(
        f"/v1/payments/{pid}/refunds",
        json={"reason": "goodwill"},
        headers=t.auth(finance, key=True),
    )
    assert r.status_code == 202, r.text
    assert (r.json()["amount_paise"], r.json()["passthrough_paise"]) == (t.PRICE, 0)
    assert (r.json()["base_credits"], r.json()["bonus_credits"]) == (0, 0)
    await inr.wait_refund(r.json()["id"], {"SUCCESS"})
    # The job again: nothing more is charged until the next period's lead time.
    await t.renew(inr, sid)
    assert await t.attempts(inr, sid) == [(1, 1, "paid", "CREDITED")]
    assert len(await t.cashfree_charges(inr_client, m["subscription_id"])) == 1
    await t.books_agree(inr)


async def test_a_mandate_that_does_not_cover_the_price_is_refused(inr: Stack) -> None:
    tok = inr.token()
    m = await t.mandate(inr, tok, max_paise=20_000)
    plan = await t.inr_plan(inr)
    r = await inr.api.post(
        "/v1/subscriptions",
        json={"plan_code": plan["code"], "mandate_id": m["id"]},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 422 and r.json()["code"] == "subscription_mandate_required"
    # Someone else's mandate is refused the same way.
    other = await t.mandate(inr, inr.token())
    r = await inr.api.post(
        "/v1/subscriptions",
        json={"plan_code": plan["code"], "mandate_id": other["id"]},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 422 and r.json()["code"] == "subscription_mandate_required"
    assert (
        await inr.scalar("SELECT count(*) FROM subscriptions WHERE plan_code = :c", c=plan["code"])
        == 0
    )


async def test_a_registered_members_period_is_supplied_in_the_gstins_state(inr: Stack) -> None:
    """A GSTIN on the billing profile fixes the place of supply of every order of the member
    (`payments.buyers`), a period charged on their mandate too: IGST across states."""
    tok = inr.token()
    profile = {
        "legal_name": "Acme Communities Private Limited",
        "address_line1": "4th Floor, 12 FC Road",
        "city": "Pune",
        "postal_code": "411004",
        "state_code": "27",
        "gstin": "27AAPFU0939F1ZV",  # Maharashtra; the seller is in 29
    }
    r = await inr.api.put(
        "/v1/billing-profile", json=profile, headers={"Authorization": f"Bearer {tok}"}
    )
    assert r.status_code == 200, r.text
    m = await t.mandate(inr, tok)
    plan = await t.inr_plan(inr)
    sid = (await t.subscribe(inr, tok, plan, m["id"]))["id"]
    await t.renew(inr, sid)
    pid = await t.payment_of(inr, sid, 1, 1)
    assert await inr.scalar(
        "SELECT (buyer_state, cgst_paise, sgst_paise, igst_paise) FROM payments WHERE id = :p",
        p=uuid.UUID(pid),
    ) == ("27", 0, 0, 4_561)
