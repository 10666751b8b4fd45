"""Refunds of sponsorships end to end through the purchases' refund route and the Cashfree
sandbox: whole milestones still in escrow go back with their proportion of the fee and GST,
released ones stay the community's, a credit note is issued for the fee part, and a refund
Cashfree does not make gives the milestones back."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from commdesk_billing.modules.communities import invariants as community_invariants
from commdesk_billing.modules.invoices import invariants as invoice_invariants
from commdesk_billing.modules.invoices.words import rupees
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.refunds import invariants as refund_invariants
from commdesk_billing.modules.sponsorships import invariants
from commdesk_billing.security.jwt import Role
from tests.harness.stack import Stack
from tests.modules.sponsorships.conftest import (
    Put,
    bearer,
    deliver,
    finance_token,
    funded,
    get_sponsorship,
    owner_token,
    payable,
    pdf_text,
    release,
    sponsor_token,
)

MILESTONES = [
    {"title": "Venue", "amount_paise": 60_000},
    {"title": "Prizes", "amount_paise": 40_000},
]


async def _checks_clean(stack: Stack) -> None:
    report = await verify_ledger(
        stack.engine,
        checks=[
            *invariants.CHECKS,
            *community_invariants.CHECKS,
            *refund_invariants.CHECKS,
            *invoice_invariants.CHECKS,
        ],
    )
    assert report.ok, [str(f) for f in report.findings]


async def _refund(
    stack: Stack, payment_id: str, body: dict[str, Any], tok: str | None = None
) -> Any:
    return await stack.api.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"reason": "event cancelled", **body},
        headers=bearer(tok or finance_token(stack)),
    )


async def _credit_note(stack: Stack, tok: str, refund_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = await stack.api.get("/v1/invoices", headers=bearer(tok, False))
        for doc in r.json()["data"]:
            if doc["refund_id"] == refund_id and doc["pdf_available"]:
                return dict(doc)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no credit note for refund {refund_id}")


async def test_a_partial_refund_after_a_release_returns_the_rest_in_proportion(
    stack: Stack, put: Put
) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    s = await funded(stack, tok, cid, milestones=MILESTONES)
    pid = s["payment"]["id"]
    assert (await deliver(stack, owner_token(stack, cid), s["id"], 1)).status_code == 200
    assert (await release(stack, finance_token(stack), s["id"], 1)).status_code == 200

    # Refused: support, by amount, a released milestone; nothing changes.
    r = await _refund(stack, pid, {"milestones": [2]}, tok=stack.token("sup-1", Role.support))
    assert r.status_code == 403, r.text
    r = await _refund(stack, pid, {"amount_paise": 40_000})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_amount"), r.text
    r = await _refund(stack, pid, {"milestones": [1]})
    assert (r.status_code, r.json()["code"]) == (409, "milestone_already_released"), r.text
    r = await _refund(stack, pid, {"milestones": [3]})
    assert (r.status_code, r.json()["code"]) == (404, "milestone_not_found"), r.text

    r = await _refund(stack, pid, {"milestones": [2]})
    assert r.status_code == 202, r.text
    # Milestone 2's 40 000 of escrow, and 40 % of the fee (5 000 → 2 000) and of each GST
    # part (450 → 180), cumulative round-half-up.
    assert (
        r.json()["passthrough_paise"],
        r.json()["taxable_paise"],
        r.json()["cgst_paise"],
        r.json()["sgst_paise"],
        r.json()["amount_paise"],
        r.json()["base_credits"],
    ) == (40_000, 2_000, 180, 180, 42_360, 0)
    # Spoken for while Cashfree works: no release, no second refund.
    during = await get_sponsorship(stack, tok, s["id"])
    assert during["milestones"][1]["status"] in ("refunding", "refunded")
    done = await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    assert done["amount_paise"] == 42_360
    s = await get_sponsorship(stack, tok, s["id"])
    assert (s["status"], s["escrow_paise"], s["released_paise"], s["refunded_paise"]) == (
        "completed",
        0,
        60_000,
        40_000,
    )
    assert [m["status"] for m in s["milestones"]] == ["released", "refunded"]
    assert await payable(stack, cid) == 60_000  # the community keeps what was released
    again = await _refund(stack, pid, {})
    assert (again.status_code, again.json()["code"]) == (409, "payment_not_refundable")
    twice = await _refund(stack, pid, {"milestones": [2]})
    assert (twice.status_code, twice.json()["code"]) == (409, "milestone_refunded")
    rel = await release(stack, finance_token(stack), s["id"], 2)
    assert (rel.status_code, rel.json()["code"]) == (409, "milestone_refunded")

    note = await _credit_note(stack, tok, done["id"])
    assert (note["kind"], note["taxable_paise"], note["cgst_paise"], note["sgst_paise"]) == (
        "credit_note",
        2_000,
        180,
        180,
    )
    assert note["total_paise"] == 2_360  # the fee part only, never the escrow
    pdf = await stack.api.get(f"/v1/invoices/{note['id']}/pdf", headers=bearer(tok, False))
    shown = pdf_text(pdf.content)
    for text in ("Credit Note", "Refund of CommDesk platform fee", rupees(2_360)):
        assert text in shown, text
    await _checks_clean(stack)


async def test_refunds_one_milestone_at_a_time_add_up_to_the_whole_fee_and_gst(
    stack: Stack, put: Put
) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    thirds = [
        {"title": "One", "amount_paise": 33_333},
        {"title": "Two", "amount_paise": 33_333},
        {"title": "Three", "amount_paise": 33_334},
    ]
    s = await funded(stack, tok, cid, milestones=thirds)
    parts = []
    for seq in (1, 2, 3):
        r = await _refund(stack, s["payment"]["id"], {"milestones": [seq]})
        assert r.status_code == 202, r.text
        done = await stack.wait_refund(r.json()["id"], {"SUCCESS"})
        parts.append((done["taxable_paise"], done["cgst_paise"], done["sgst_paise"]))
    # 1 667 + 1 666 + 1 667 = 5 000; 150 x 3 = 450 each: exactly what was paid.
    assert parts == [(1667, 150, 150), (1666, 150, 150), (1667, 150, 150)]
    paid = await stack.payment(tok, s["payment"]["id"])
    assert paid["status"] == "CREDITED"
    total = await stack.scalar(
        "SELECT refund_amount_paise FROM payments WHERE id = :p", p=s["payment"]["id"]
    )
    assert total == s["total_paise"]
    s = await get_sponsorship(stack, tok, s["id"])
    assert (s["status"], s["escrow_paise"], s["refunded_paise"]) == ("completed", 0, 100_000)
    await _checks_clean(stack)


async def test_a_refund_cashfree_does_not_make_gives_the_milestones_back(
    stack: Stack, put: Put
) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    s = await funded(stack, tok, cid, milestones=MILESTONES)
    assert (await deliver(stack, owner_token(stack, cid), s["id"], 1)).status_code == 200
    # The sandbox's refund_note switch: FAILED ends the refund CANCELLED, as Cashfree does.
    r = await stack.api.post(
        f"/v1/payments/{s['payment']['id']}/refunds",
        json={"reason": "FAILED"},
        headers=bearer(finance_token(stack)),
    )
    assert r.status_code == 202, r.text
    assert r.json()["amount_paise"] == s["total_paise"]  # no milestones named: all of them
    await stack.wait_refund(r.json()["id"], {"CANCELLED"})
    s = await get_sponsorship(stack, tok, s["id"])
    # Back where they were: milestone 1 delivered, 2 pending; all still in escrow.
    assert [m["status"] for m in s["milestones"]] == ["delivered", "pending"]
    assert (s["status"], s["escrow_paise"], s["refunded_paise"]) == ("funded", 100_000, 0)
    assert (await release(stack, tok, s["id"], 1)).status_code == 200
    assert await payable(stack, cid) == 60_000
    await _checks_clean(stack)


async def test_a_full_refund_returns_everything_paid(stack: Stack, put: Put) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    s = await funded(stack, tok, cid, amount=25_050)
    key = uuid.uuid4().hex
    headers = {**bearer(finance_token(stack)), "Idempotency-Key": key}
    url = f"/v1/payments/{s['payment']['id']}/refunds"
    first = await stack.api.post(url, json={"reason": "not held"}, headers=headers)
    repeat = await stack.api.post(url, json={"reason": "not held"}, headers=headers)
    assert first.status_code == repeat.status_code == 202, repeat.text
    assert first.json()["id"] == repeat.json()["id"]
    assert (first.json()["amount_paise"], first.json()["taxable_paise"]) == (26_529, 1253)
    await stack.wait_refund(first.json()["id"], {"SUCCESS"})
    escrow = await stack.scalar(
        "SELECT coalesce(-sum(e.amount), 0) FROM ledger_entries e JOIN ledger_journals j "
        "ON j.id = e.journal_id JOIN ledger_accounts a ON a.id = e.account_id "
        "WHERE a.code = 'inr:sponsorship_escrow' AND j.metadata->>'sponsorship_id' = :s",
        s=s["id"],
    )
    assert escrow == 0
    await _checks_clean(stack)


async def test_what_is_refundable_and_hostile_refund_bodies(stack: Stack, put: Put) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    s = await funded(stack, tok, cid, milestones=MILESTONES)
    pid = s["payment"]["id"]
    assert (await deliver(stack, owner_token(stack, cid), s["id"], 1)).status_code == 200
    assert (await release(stack, tok, s["id"], 1)).status_code == 200
    listed = await stack.api.get(
        f"/v1/payments/{pid}/refunds", headers=bearer(finance_token(stack), False)
    )
    assert listed.status_code == 200 and listed.json()["refundable_paise"] == 42_360
    hostile: list[dict[str, Any]] = [
        {"milestones": []},
        {"milestones": [0]},
        {"milestones": [21]},
        {"milestones": ["2"]},
        {"milestones": [2.0]},
        {"milestones": 2},
        {"milestones": list(range(1, 22))},
        {"milestones": [2], "escrow_paise": 1},
    ]
    for body in hostile:
        r = await _refund(stack, pid, body)
        assert r.status_code == 422, (body, r.text)
    # milestones name a sponsorship's refund, never a credit purchase's
    _, bought = await stack.credited()
    r = await _refund(stack, bought["id"], {"milestones": [1]})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_amount"), r.text
    assert await stack.scalar("SELECT count(*) FROM refunds WHERE payment_id = :p", p=pid) == 0


async def test_a_release_and_a_refund_of_one_milestone_at_once_do_one_thing(
    stack: Stack, put: Put
) -> None:
    cid = await put()
    tok = sponsor_token(stack)
    s = await funded(stack, tok, cid, milestones=MILESTONES)
    assert (await deliver(stack, owner_token(stack, cid), s["id"], 1)).status_code == 200
    released, refunded = await asyncio.gather(
        release(stack, finance_token(stack), s["id"], 1),
        _refund(stack, s["payment"]["id"], {"milestones": [1]}),
    )
    wins = [released.status_code == 200, refunded.status_code == 202]
    assert wins.count(True) == 1, (released.text, refunded.text)
    loser = refunded if wins[0] else released
    assert loser.status_code == 409 and loser.json()["code"] in (
        "milestone_already_released",
        "milestone_refunded",
    ), loser.text
    if wins[1]:
        await stack.wait_refund(refunded.json()["id"], {"SUCCESS"})
        assert await payable(stack, cid) == 0
    else:
        assert await payable(stack, cid) == 60_000
    await _checks_clean(stack)
