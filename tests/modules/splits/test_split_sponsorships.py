"""Sponsorships on the split path end to end: a community registered as an Easy Split
vendor at the Cashfree sandbox, a sponsor's order carrying the community's part as the
vendor's split, the vendor's balance at Cashfree, partial refunds sending `refund_splits`
computed from our books, and the vendor settlement webhooks clearing what is due, once."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import text

from commdesk_billing.gateway import signature
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.refunds import invariants as refund_invariants
from commdesk_billing.modules.splits import invariants
from commdesk_billing.modules.sponsorships import invariants as sponsorship_invariants
from tests.modules.splits.conftest import Split
from tests.modules.sponsorships.conftest import (
    Put,
    bearer,
    finance_token,
    funded,
    get_sponsorship,
    release,
    sponsor_token,
)

# ₹1 000 pledged at the default 5 % fee: fee 5 000, GST 900 (450 + 450); the sponsor pays
# 105 900, of which 100 000 is the community's split at Cashfree.
AMOUNT, FEE, GST = 100_000, 5_000, 900


async def _checks_clean(split: Split) -> None:
    report = await verify_ledger(
        split.stack.engine,
        checks=[
            *invariants.CHECKS,
            *sponsorship_invariants.CHECKS,
            *refund_invariants.CHECKS,
        ],
    )
    assert report.ok, [str(f) for f in report.findings]


async def _legs(split: Split, key: str) -> dict[str, int]:
    got = await split.stack.scalar(
        "SELECT json_object_agg(a.code, e.amount) FROM ledger_entries e "
        "JOIN ledger_journals j ON j.id = e.journal_id JOIN ledger_accounts a "
        "ON a.id = e.account_id WHERE j.idempotency_key = :k",
        k=key,
    )
    return dict(got or {})


async def _refund(split: Split, payment_id: str, body: dict[str, Any]) -> Any:
    return await split.stack.api.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"reason": "event cancelled", **body},
        headers=bearer(finance_token(split.stack)),
    )


async def test_a_split_sponsorship_is_settled_to_the_vendor_at_cashfree(
    split: Split, put: Put
) -> None:
    cid, vendor_id = await split.vendor(put)
    tok = sponsor_token(split.stack)
    s = await funded(split.stack, tok, cid)
    assert (s["path"], s["vendor_id"], s["status"]) == ("split", vendor_id, "funded")
    assert (s["amount_paise"], s["fee_paise"], s["gst_paise"], s["total_paise"]) == (
        AMOUNT,
        FEE,
        GST,
        AMOUNT + FEE + GST,
    )
    assert s["escrow_paise"] == 0  # nothing held by us
    # The order at Cashfree carries the community's part as the vendor's share, in rupees.
    order = await split.stack.sandbox.get(f"/pg/orders/{s['payment']['order_id']}")
    assert order.json()["order_splits"][0]["vendor_id"] == vendor_id, order.text
    assert order.json()["order_splits"][0]["amount"] == 1000.0, order.text
    # The vendor's balance at Cashfree is the community's part; our books say it is due.
    assert await split.balance(vendor_id) == AMOUNT
    assert await split.due(vendor_id) == AMOUNT
    assert await _legs(split, f"sponsorship:{s['id']}:funded") == {
        "inr:gateway_clearing": AMOUNT + FEE + GST,
        "inr:sponsorship_fee_revenue": -FEE,
        "inr:gst_payable": -GST,
        "inr:vendor_settlements_due": -AMOUNT,
    }
    # Nothing to release: Cashfree settles it.
    r = await release(split.stack, finance_token(split.stack), s["id"], 1)
    assert (r.status_code, r.json()["code"]) == (409, "sponsorship_split_no_release"), r.text
    # A community that is not a vendor still gets escrow.
    plain = await put()
    e = await funded(split.stack, tok, plain)
    assert (e["path"], e["vendor_id"], e["escrow_paise"]) == ("escrow", None, AMOUNT)
    await _checks_clean(split)


async def test_partial_refunds_take_the_vendor_part_and_the_fee_in_proportion(
    split: Split, put: Put
) -> None:
    cid, vendor_id = await split.vendor(put)
    tok = sponsor_token(split.stack)
    s = await funded(split.stack, tok, cid)
    pid = s["payment"]["id"]

    # Refused, nothing written: milestones, more than the part, support.
    r = await _refund(split, pid, {"milestones": [1]})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_amount"), r.text
    r = await _refund(split, pid, {"amount_paise": AMOUNT + 1})
    assert (r.status_code, r.json()["code"]) == (422, "refund_exceeds_refundable"), r.text
    assert r.json()["refundable_paise"] == AMOUNT
    listed = await split.stack.api.get(
        f"/v1/payments/{pid}/refunds", headers=bearer(finance_token(split.stack), False)
    )
    assert listed.json()["refundable_paise"] == AMOUNT + FEE + GST and not listed.json()["data"]

    # A third of the part: fee round-half-up(5 000 x 33 333 / 100 000) = 1 667, each GST
    # half round-half-up(450 x 0.33333) = 150.
    r = await _refund(split, pid, {"amount_paise": 33_333})
    assert r.status_code == 202, r.text
    first = r.json()
    assert (
        first["passthrough_paise"],
        first["taxable_paise"],
        first["cgst_paise"],
        first["sgst_paise"],
        first["amount_paise"],
    ) == (33_333, 1_667, 150, 150, 35_300)
    done = await split.stack.wait_refund(first["id"], {"SUCCESS"})
    assert done["amount_paise"] == 35_300
    # Cashfree took exactly our part back from the vendor; our books agree.
    assert await split.balance(vendor_id) == AMOUNT - 33_333
    assert await split.due(vendor_id) == AMOUNT - 33_333
    assert await _legs(split, f"refund:{first['id']}:inr") == {
        "inr:refunds_payable": -35_300,
        "inr:sponsorship_fee_revenue": 1_667,
        "inr:gst_payable": 300,
        "inr:vendor_settlements_due": 33_333,
    }
    refund_at_cashfree = await split.stack.sandbox.get(
        f"/pg/orders/{s['payment']['order_id']}/refunds/{first['refund_ref']}"
    )
    [share] = refund_at_cashfree.json()["refund_splits"]
    assert (share["vendor_id"], share["amount"]) == (vendor_id, 333.33)

    # The rest (no amount: all that is left): the fee and GST add up to exactly what was paid.
    r = await _refund(split, pid, {})
    assert r.status_code == 202, r.text
    rest = r.json()
    assert (
        rest["passthrough_paise"],
        rest["taxable_paise"],
        rest["cgst_paise"],
        rest["sgst_paise"],
    ) == (66_667, 3_333, 300, 300)
    assert first["amount_paise"] + rest["amount_paise"] == AMOUNT + FEE + GST
    await split.stack.wait_refund(rest["id"], {"SUCCESS"})
    assert await split.balance(vendor_id) == 0
    assert await split.due(vendor_id) == 0
    after = await get_sponsorship(split.stack, tok, s["id"])
    assert (after["refunded_paise"], after["escrow_paise"]) == (AMOUNT, 0)
    again = await _refund(split, pid, {})
    assert (again.status_code, again.json()["code"]) == (409, "payment_not_refundable")
    await _checks_clean(split)


async def _settlement(split: Split, settlement_id: str) -> dict[str, Any] | None:
    async with split.stack.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, amount_paise FROM vendor_settlements WHERE settlement_id = :s"
                ),
                {"s": settlement_id},
            )
        ).first()
    return dict(row._mapping) if row else None


async def test_a_vendor_settlement_clears_the_due_amount_once_however_often_it_arrives(
    split: Split, put: Put
) -> None:
    cid, vendor_id = await split.vendor(put)
    tok = sponsor_token(split.stack)
    await funded(split.stack, tok, cid)
    await split.stack.faults(webhook_duplicates=3)  # every webhook three times
    settled = await split.stack.sandbox.post(f"/_sandbox/easy-split/vendors/{vendor_id}/settle")
    assert settled.status_code == 200, settled.text
    sid = str(settled.json()["settlement_id"])

    async def success() -> bool:
        row = await _settlement(split, sid)
        return row is not None and row["status"] == "SUCCESS"

    await split.wait_for(success, f"settlement {sid} SUCCESS")
    assert await split.due(vendor_id) == 0
    assert await split.balance(vendor_id) == 0
    journals = await split.stack.scalar(
        "SELECT count(*) FROM ledger_journals WHERE metadata->>'settlement_id' = :s", s=sid
    )
    assert journals == 1
    assert await _legs(split, f"vendor-settlement:{sid}:settled") == {
        "inr:vendor_settlements_due": AMOUNT,
        "inr:gateway_clearing": -AMOUNT,
    }

    async def repeats_seen() -> bool:
        n = await split.stack.scalar(
            "SELECT coalesce(sum(duplicates), 0) FROM vendor_settlement_webhooks "
            "WHERE settlement_id = :s",
            s=sid,
        )
        return int(n) >= 2

    await split.wait_for(repeats_seen, "the duplicates arrived")
    assert await split.due(vendor_id) == 0  # still once
    await _checks_clean(split)


async def test_a_failed_or_reversed_settlement_leaves_the_money_due(split: Split, put: Put) -> None:
    cid, vendor_id = await split.vendor(put)
    await funded(split.stack, sponsor_token(split.stack), cid)

    await split.easy_split(fail_vendor_settlements=1)
    failed = await split.stack.sandbox.post(f"/_sandbox/easy-split/vendors/{vendor_id}/settle")
    fid = str(failed.json()["settlement_id"])

    async def is_(sid: str, status: str) -> bool:
        row = await _settlement(split, sid)
        return row is not None and row["status"] == status

    await split.wait_for(lambda: is_(fid, "FAILED"), "FAILED")
    assert await split.due(vendor_id) == AMOUNT

    await split.easy_split(reverse_vendor_settlements=1)
    reversed_ = await split.stack.sandbox.post(f"/_sandbox/easy-split/vendors/{vendor_id}/settle")
    rid = str(reversed_.json()["settlement_id"])
    await split.wait_for(lambda: is_(rid, "REVERSED"), "REVERSED")
    assert await split.due(vendor_id) == AMOUNT  # settled, then due again
    assert await split.balance(vendor_id) == AMOUNT
    await _checks_clean(split)


async def test_the_receiver_refuses_unsigned_and_keeps_unreadable_bodies(split: Split) -> None:
    api = split.base
    body = b'{"type": "VENDOR_SETTLEMENT_SUCCESS", "data": {}}'
    before = int(await api.scalar("SELECT count(*) FROM vendor_settlement_webhooks"))
    r = await api.api.post(
        "/v1/webhooks/cashfree/vendor-settlements",
        content=body,
        headers={"x-webhook-timestamp": "1", "x-webhook-signature": "AAAA"},
    )
    assert r.status_code == 401, r.text
    assert int(await api.scalar("SELECT count(*) FROM vendor_settlement_webhooks")) == before
    signed = await _post_signed(api, body)
    assert (signed.status_code, signed.json()["status"]) == (200, "rejected"), signed.text
    unknown = json_settlement(f"cdbc_{uuid.uuid4().hex}", "SUCCESS")
    r = await _post_signed(api, unknown)
    assert (r.status_code, r.json()["status"]) == (200, "unknown_vendor"), r.text
    again = await _post_signed(api, unknown)
    assert again.json()["status"] == "duplicate"


def json_settlement(vendor_id: str, status: str, settlement_id: int = 4242) -> bytes:
    return json.dumps(
        {
            "data": {
                "settlement": {
                    "settlement_id": settlement_id,
                    "status": status,
                    "utr": "1686217237243457",
                    "settled_on": "null",
                    "reason": None,
                    "adjustment": 0.0,
                    "settlement_amount": 600.00,
                    "vendor_id": vendor_id,
                    "vendor_transaction_amount": 600.00,
                }
            },
            "event_time": "2026-12-07T10:00:00+05:30",
            "type": f"VENDOR_SETTLEMENT_{status}",
        }
    ).encode()


async def _post_signed(stack: Any, body: bytes) -> Any:
    ts = str(int(time.time() * 1000))
    secret = stack.settings.cashfree_client_secret.get_secret_value()
    return await stack.api.post(
        "/v1/webhooks/cashfree/vendor-settlements",
        content=body,
        headers={
            "content-type": "application/json",
            "x-webhook-timestamp": ts,
            "x-webhook-signature": signature.sign(secret, ts, body),
        },
    )


async def test_a_refund_after_the_vendor_was_settled_is_recoverable_from_it(
    split: Split, put: Put
) -> None:
    """Cashfree settled the vendor, then a refund takes part of it back: the vendor's
    balance at Cashfree and what our books hold for it both go negative by that part (a
    debt Cashfree nets from the vendor's next settlement), and the next settlement clears
    the rest."""
    cid, vendor_id = await split.vendor(put)
    tok = sponsor_token(split.stack)
    s = await funded(split.stack, tok, cid)
    first = await split.stack.sandbox.post(f"/_sandbox/easy-split/vendors/{vendor_id}/settle")
    sid = str(first.json()["settlement_id"])

    async def settled(settlement_id: str) -> bool:
        row = await _settlement(split, settlement_id)
        return row is not None and row["status"] == "SUCCESS"

    await split.wait_for(lambda: settled(sid), "the first settlement")
    assert await split.due(vendor_id) == 0
    r = await _refund(split, s["payment"]["id"], {"amount_paise": 20_000})
    assert r.status_code == 202, r.text
    await split.stack.wait_refund(r.json()["id"], {"SUCCESS"})
    assert await split.balance(vendor_id) == -20_000
    assert await split.due(vendor_id) == -20_000  # recoverable from the vendor
    # The next sponsorship's part, net of the debt, is what Cashfree settles next.
    await funded(split.stack, tok, cid)
    assert await split.due(vendor_id) == AMOUNT - 20_000
    second = await split.stack.sandbox.post(f"/_sandbox/easy-split/vendors/{vendor_id}/settle")
    nid = str(second.json()["settlement_id"])
    await split.wait_for(lambda: settled(nid), "the second settlement")
    row = await _settlement(split, nid)
    assert row is not None and row["amount_paise"] == AMOUNT - 20_000
    assert await split.due(vendor_id) == 0
    await _checks_clean(split)


async def test_partial_refunds_with_a_cancelled_one_return_exactly_the_whole(
    split: Split, put: Put
) -> None:
    """Three partial refunds of the part, one of them refused by Cashfree (CANCELLED), then
    the rest: the cumulative figures never give back more fee or GST than was paid, the
    cancelled one takes nothing from the vendor, and everything returned adds up to exactly
    what the sponsor paid, at Cashfree and in our books."""
    cid, vendor_id = await split.vendor(put)
    s = await funded(split.stack, sponsor_token(split.stack), cid)
    pid = s["payment"]["id"]
    done: list[dict[str, Any]] = []
    for part, note in ((101, "small"), (33_333, "FAILED"), (33_333, "third"), (101, "small")):
        r = await _refund(split, pid, {"amount_paise": part, "reason": note})
        assert r.status_code == 202, r.text
        final = "CANCELLED" if note == "FAILED" else "SUCCESS"
        settled = await split.stack.wait_refund(r.json()["id"], {final})
        if final == "SUCCESS":
            done.append(settled)
    r = await _refund(split, pid, {})
    assert r.status_code == 202, r.text
    done.append(await split.stack.wait_refund(r.json()["id"], {"SUCCESS"}))
    assert sum(d["passthrough_paise"] for d in done) == AMOUNT
    assert sum(d["taxable_paise"] for d in done) == FEE
    assert sum(d["cgst_paise"] + d["sgst_paise"] + d["igst_paise"] for d in done) == GST
    assert sum(d["amount_paise"] for d in done) == AMOUNT + FEE + GST
    assert await split.balance(vendor_id) == 0
    assert await split.due(vendor_id) == 0
    await _checks_clean(split)
