"""Sponsorships on the escrow path end to end: our API, the worker handing the paid
sponsor's payment over, the Cashfree sandbox's checkout, PostgreSQL and MongoDB. The stack's
database is sealed and verified (`ledger verify`, the sponsorship checks included) when the
run ends; each test also runs the sponsorship, community and document checks itself."""

from __future__ import annotations

import asyncio
import uuid

from commdesk_billing.modules.communities import invariants as community_invariants
from commdesk_billing.modules.invoices import invariants as invoice_invariants
from commdesk_billing.modules.invoices.words import rupees
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.sponsorships import invariants
from tests.harness.stack import Stack
from tests.modules.sponsorships.conftest import (
    Put,
    bearer,
    deliver,
    finance_token,
    funded,
    get_sponsorship,
    open_sponsorship,
    owner_token,
    payable,
    pdf_text,
    release,
    sponsor_token,
    wait_invoice,
)

# ₹1 000 pledged at the default 5 % fee: fee 5 000, GST 18 % of it 900 (CGST 450 + SGST 450
# for a sponsor in our state), the sponsor pays 105 900; the community gets all 100 000.
AMOUNT, FEE, GST = 100_000, 5_000, 900
MILESTONES = [
    {"title": "Venue", "amount_paise": 60_000},
    {"title": "Prizes", "amount_paise": 40_000},
]


async def _checks_clean(stack: Stack) -> None:
    report = await verify_ledger(
        stack.engine,
        checks=[*invariants.CHECKS, *community_invariants.CHECKS, *invoice_invariants.CHECKS],
    )
    assert report.ok, [str(f) for f in report.findings]


async def _escrow_of(stack: Stack, sid: str) -> int:
    return int(
        await stack.scalar(
            "SELECT coalesce(-sum(e.amount), 0) FROM ledger_entries e "
            "JOIN ledger_journals j ON j.id = e.journal_id JOIN ledger_accounts a "
            "ON a.id = e.account_id WHERE a.code = 'inr:sponsorship_escrow' "
            "AND j.metadata->>'sponsorship_id' = :s",
            s=sid,
        )
    )


async def test_paid_into_escrow_invoiced_then_released_per_milestone(
    stack: Stack, put: Put
) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    opened = await open_sponsorship(stack, tok, cid, milestones=MILESTONES)
    assert (opened["status"], opened["path"]) == ("awaiting_payment", "escrow")
    assert (opened["amount_paise"], opened["fee_paise"], opened["gst_paise"]) == (AMOUNT, FEE, GST)
    assert opened["total_paise"] == opened["payment"]["amount_paise"] == AMOUNT + FEE + GST
    assert opened["payment"]["checkout_url"] and opened["escrow_paise"] == 0
    # The sponsor's order at Cashfree asks for all of it.
    order = await stack.sandbox.get(f"/pg/orders/{opened['payment']['order_id']}")
    assert order.status_code == 200 and order.json()["order_amount"] == 1059.0, order.text

    await stack.pay(opened["payment"])
    paid = await stack.wait_status(tok, opened["payment"]["id"], {"CREDITED"})
    assert (paid["kind"], paid["credits_granted"]) == ("sponsorship", 0)
    assert (await stack.wallet(tok))["available_credits"] == 0  # no credits for a sponsor
    s = await get_sponsorship(stack, tok, opened["id"])
    assert (s["status"], s["escrow_paise"], s["released_paise"]) == ("funded", AMOUNT, 0)
    assert await _escrow_of(stack, s["id"]) == AMOUNT
    # The one funding journal: clearing all paid, fee revenue, GST payable, escrow.
    legs = dict(
        (
            await stack.scalar(
                "SELECT json_object_agg(a.code, e.amount) FROM ledger_entries e "
                "JOIN ledger_journals j ON j.id = e.journal_id JOIN ledger_accounts a "
                "ON a.id = e.account_id WHERE j.idempotency_key = :k",
                k=f"sponsorship:{s['id']}:funded",
            )
        ).items()
    )
    assert legs == {
        "inr:gateway_clearing": AMOUNT + FEE + GST,
        "inr:sponsorship_fee_revenue": -FEE,
        "inr:gst_payable": -GST,
        "inr:sponsorship_escrow": -AMOUNT,
    }

    # The tax invoice is for the platform's fee only, to the sponsor.
    invoice = await wait_invoice(stack, tok, paid["id"], pdf=True)
    pdf = await stack.api.get(f"/v1/invoices/{invoice['id']}/pdf", headers=bearer(tok, False))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    shown = pdf_text(pdf.content)
    for text in (invoice["number"], "Tax Invoice", "platform fee", rupees(FEE + GST)):
        assert text in shown, text
    assert rupees(AMOUNT + FEE + GST) not in shown  # the community's part is not our supply
    assert (invoice["taxable_paise"], invoice["cgst_paise"], invoice["sgst_paise"]) == (
        FEE,
        450,
        450,
    )
    assert invoice["total_paise"] == FEE + GST
    [line] = invoice["document"]["lines"]
    assert line["taxable_paise"] == FEE and "platform fee" in line["description"]

    owner = owner_token(stack, cid)
    # Nothing is released before delivery, by anyone.
    r = await release(stack, finance_token(stack), s["id"], 1)
    assert (r.status_code, r.json()["code"]) == (409, "milestone_not_delivered"), r.text
    r = await deliver(stack, owner, s["id"], 1)
    assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
    again = await deliver(stack, owner, s["id"], 1)  # marking again changes nothing
    assert again.status_code == 200 and again.json() == r.json()

    key = uuid.uuid4().hex
    r = await release(stack, tok, s["id"], 1, key=key)  # the sponsor who paid approves
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    assert await payable(stack, cid) == 60_000
    replay = await release(stack, tok, s["id"], 1, key=key)
    assert replay.status_code == 200 and replay.json() == r.json()
    twice = await release(stack, finance_token(stack), s["id"], 1)
    assert (twice.status_code, twice.json()["code"]) == (409, "milestone_already_released")
    assert await payable(stack, cid) == 60_000  # one effect
    s = await get_sponsorship(stack, owner, s["id"])
    assert (s["status"], s["escrow_paise"], s["released_paise"]) == ("funded", 40_000, 60_000)
    assert await _escrow_of(stack, s["id"]) == 40_000

    assert (await deliver(stack, owner, s["id"], 2)).status_code == 200
    r = await release(stack, finance_token(stack), s["id"], 2)
    assert r.status_code == 200, r.text
    s = await get_sponsorship(stack, tok, s["id"])
    assert (s["status"], s["escrow_paise"], s["released_paise"]) == ("completed", 0, AMOUNT)
    assert [m["status"] for m in s["milestones"]] == ["released", "released"]
    assert await payable(stack, cid) == AMOUNT
    assert await _escrow_of(stack, s["id"]) == 0
    await _checks_clean(stack)


async def test_no_milestones_is_one_milestone_of_the_whole_amount(stack: Stack, put: Put) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    s = await funded(stack, tok, cid, amount=25_050)
    [m] = s["milestones"]
    assert (m["seq"], m["amount_paise"], m["title"]) == (1, 25_050, s["purpose"])
    # round-half-up(25 050 x 500 / 10 000) = 1 253 (1 252.5); GST round-half-up(225.54) = 226
    assert (s["fee_paise"], s["gst_paise"], s["total_paise"]) == (1253, 226, 26_529)
    await _checks_clean(stack)


async def test_a_sponsor_in_another_state_pays_igst(stack: Stack, put: Put) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    s = await funded(stack, tok, cid, buyer_state="27")
    invoice = await wait_invoice(stack, tok, s["payment"]["id"])
    assert (invoice["cgst_paise"], invoice["sgst_paise"], invoice["igst_paise"]) == (0, 0, GST)
    assert invoice["place_of_supply"] == "27"


async def test_two_releases_at_once_release_once(stack: Stack, put: Put) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    s = await funded(stack, tok, cid, milestones=MILESTONES)
    assert (await deliver(stack, owner_token(stack, cid), s["id"], 1)).status_code == 200
    answers = await asyncio.gather(
        *(release(stack, who, s["id"], 1) for who in (tok, finance_token(stack), tok))
    )
    codes = sorted(r.status_code for r in answers)
    assert codes[0] == 200 and codes[1:] == [409, 409], [r.text for r in answers]
    assert await payable(stack, cid) == 60_000
    assert (
        await stack.scalar(
            "SELECT count(*) FROM ledger_journals WHERE idempotency_key = :k",
            k=f"sponsorship:{s['id']}:release:1",
        )
        == 1
    )
    await _checks_clean(stack)


async def test_an_unpaid_sponsorship_holds_nothing_to_deliver_or_release(
    stack: Stack, put: Put
) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    s = await open_sponsorship(stack, tok, cid)
    r = await deliver(stack, owner_token(stack, cid), s["id"], 1)
    assert (r.status_code, r.json()["code"]) == (409, "sponsorship_not_funded")
    r = await release(stack, finance_token(stack), s["id"], 1)
    assert (r.status_code, r.json()["code"]) == (409, "sponsorship_not_funded")
    # A failed attempt leaves it awaiting payment with nothing in escrow.
    await stack.pay(s["payment"], outcome="failure")
    await stack.wait_status(tok, s["payment"]["id"], {"FAILED"})
    s = await get_sponsorship(stack, tok, s["id"])
    assert (s["status"], s["escrow_paise"]) == ("awaiting_payment", 0)
    assert await _escrow_of(stack, s["id"]) == 0


async def test_the_same_key_answers_with_the_same_sponsorship(stack: Stack, put: Put) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    headers = bearer(tok)
    from tests.modules.sponsorships.conftest import body

    first = await stack.api.post("/v1/sponsorships", json=body(cid), headers=headers)
    second = await stack.api.post("/v1/sponsorships", json=body(cid), headers=headers)
    assert first.status_code == second.status_code == 201, second.text
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["payment"]["order_id"] == second.json()["payment"]["order_id"]
    other = await stack.api.post(
        "/v1/sponsorships", json=body(cid, amount=200_000), headers=headers
    )
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert (
        await stack.scalar(
            "SELECT count(*) FROM sponsorships s JOIN users u ON u.id = s.sponsor_user_id "
            "WHERE s.community_id = :c",
            c=cid,
        )
        == 1
    )
