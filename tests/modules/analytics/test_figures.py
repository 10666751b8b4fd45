"""Analytics, the trial balance and the GST summary against the books, to the paisa.

Real purchases (the Cashfree sandbox over HTTP, the worker crediting them), a failed order,
a refund, a community spend and a platform debit go through a stack of the test's own (its
own database: every figure is this test's). Each figure the API answers is then compared
with a direct SUM over the ledger's legs, the payments, the refunds and the tax documents,
first as read from the source rows (today is not settled), then as read from the rollup
buckets the `analytics.billing` consumer wrote (the day marked as recomputed after its end),
and again after a rebuild and a repeated event: nothing counted twice."""

from __future__ import annotations

import asyncio
import csv
import io
import socket
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import text

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.analytics import rollups
from commdesk_billing.modules.analytics.activity import COLLECTION, CommunityActivity, document_id
from commdesk_billing.modules.analytics.consumers import AnalyticsRollups
from commdesk_billing.modules.analytics.periods import Period, day_start, today
from commdesk_billing.modules.analytics.sources import day_expr
from commdesk_billing.queues.envelope import new_envelope
from commdesk_billing.security.jwt import Role
from tests.harness.mongo import MongoTarget, communities
from tests.harness.stack import Stack, StackFactory


async def _eventually(stack: Stack, sql: str, wanted: Any, timeout_s: float = 30, **p: Any) -> None:
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = await stack.scalar(sql, **p)
        if value == wanted:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{sql}: {value!r}, wanted {wanted!r}")


B2B_PROFILE = {
    "legal_name": "Acme Communities Private Limited",
    "address_line1": "4th Floor, 12 FC Road",
    "city": "Pune",
    "postal_code": "411004",
    "state_code": "27",
    "gstin": "27AAPFU0939F1ZV",
}


class Books:
    """Direct sums over the ledger, the payments and the documents of a window."""

    def __init__(self, stack: Stack, period: Period) -> None:
        self.stack, self.w = stack, {"s": period.start, "e": period.end}

    async def legs(
        self, code: str, *, kinds: tuple[str, ...] | None = None, side: str = "net"
    ) -> int:
        """Sum of the legs on accounts whose code is LIKE `code` in the window: `debit`
        (positive legs), `credit` (negative legs, as a positive number) or `net` (credits
        less debits)."""
        pick = {"debit": "e.amount > 0", "credit": "e.amount < 0", "net": "true"}[side]
        sign = "" if side == "debit" else "-"
        value = await self.stack.scalar(
            f"""
            SELECT coalesce({sign}sum(e.amount), 0) FROM ledger_entries e
              JOIN ledger_journals j ON j.id = e.journal_id
              JOIN ledger_accounts a ON a.id = e.account_id
             WHERE a.code LIKE :code AND {pick}
               AND e.created_at >= :s AND e.created_at < :e
               AND (CAST(:kinds AS text[]) IS NULL OR j.kind = ANY(CAST(:kinds AS text[])))""",
            code=code,
            kinds=list(kinds) if kinds else None,
            **self.w,
        )
        return int(value)

    async def payments(self, statuses: tuple[str, ...] | None = None) -> int:
        return int(
            await self.stack.scalar(
                """SELECT count(*) FROM payments WHERE created_at >= :s AND created_at < :e
                   AND (CAST(:st AS text[]) IS NULL OR status = ANY(CAST(:st AS text[])))""",
                st=list(statuses) if statuses else None,
                **self.w,
            )
        )

    async def rows(self, sql: str) -> list[Any]:
        async with self.stack.engine.connect() as conn:
            return list((await conn.execute(text(sql), self.w)).all())


async def _get(stack: Stack, path: str, period: Period, **params: str) -> httpx.Response:
    tok = stack.token("auditor-1", Role.auditor)
    r = await stack.api.get(
        path,
        params={"from": period.first.isoformat(), "to": period.last.isoformat(), **params},
        headers={"Authorization": f"Bearer {tok}"},
    )
    assert r.status_code == 200, r.text
    return r


async def _check_against_the_books(stack: Stack, period: Period) -> dict[str, Any]:
    books = Books(stack, period)
    totals = (await _get(stack, "/v1/analytics/summary", period)).json()["totals"]
    clearing_kinds = (
        "payment.captured",
        "sponsorship.funded",
        "sponsorship.split_funded",
        "subscription.paid",
    )
    settlement_kinds = ("settlement.created", "settlement.failed", "settlement.reversed")
    expected = {
        "payments_created": await books.payments(),
        "payments_succeeded": await books.payments(("PAID", "CREDITED", "REVIEW")),
        "payments_failed": await books.payments(("FAILED", "USER_DROPPED", "EXPIRED", "CANCELLED")),
        "collected_paise": await books.legs(
            "inr:gateway_clearing", kinds=clearing_kinds, side="debit"
        ),
        "revenue_recognized_paise": await books.legs("inr:platform_revenue"),
        "platform_fee_paise": await books.legs("inr:platform_fee_revenue"),
        "breakage_paise": await books.legs("inr:breakage_revenue"),
        "deferred_added_paise": await books.legs("inr:deferred_revenue", side="credit"),
        "deferred_released_paise": await books.legs("inr:deferred_revenue", side="debit"),
        "gst_collected_paise": await books.legs("inr:gst_payable"),
        "refunded_paise": await books.legs("inr:refunds_payable", side="credit"),
        "refunds_paid_paise": await books.legs("inr:refunds_payable", side="debit"),
        "community_earnings_paise": await books.legs("community:%:payable")
        - await books.legs("community:%:payable", kinds=settlement_kinds),
    }
    assert {k: totals[k] for k in expected} == expected
    assert totals["fees_paise"] == (
        await books.legs("inr:platform_fee_revenue")
        + await books.legs("inr:sponsorship_fee_revenue")
        + await books.legs("inr:payout_fee_revenue")
    )
    # Payments by status and method, as the payments table has them.
    lines = (await _get(stack, "/v1/analytics/summary", period)).json()["payments"]
    direct = await books.rows(
        """SELECT status, coalesce(payment_method, 'none'), count(*), sum(amount_paise)
             FROM payments WHERE created_at >= :s AND created_at < :e GROUP BY 1, 2 ORDER BY 1, 2"""
    )
    assert [(x["status"], x["method"], x["payments"], x["amount_paise"]) for x in lines] == [
        (s, m, int(n), int(a)) for s, m, n, a in direct
    ]
    # …and day by day.
    per_day = (await _get(stack, "/v1/analytics/payments", period)).json()["lines"]
    direct_days = await books.rows(
        f"""SELECT {day_expr("created_at")}, status, coalesce(payment_method, 'none'), count(*),
                   sum(amount_paise)
              FROM payments WHERE created_at >= :s AND created_at < :e
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
    )
    assert [
        (x["day"], x["status"], x["method"], x["payments"], x["amount_paise"]) for x in per_day
    ] == [(d.isoformat(), s, m, int(n), int(a)) for d, s, m, n, a in direct_days]
    # The days add up to the period.
    days = (await _get(stack, "/v1/analytics/daily", period)).json()["days"]
    assert [d["day"] for d in days] == [d.isoformat() for d in period.each_day()]
    for key in expected:
        assert sum(d[key] for d in days) == totals[key], key

    # The trial balance: every account's closing is the sum of all its legs up to the end,
    # its movement the legs of the period; each ledger's columns sum to zero.
    tb = (await _get(stack, "/v1/analytics/trial-balance", period)).json()
    ledger = {
        code: (int(opening), int(debits), int(credits))
        for code, opening, debits, credits in await books.rows(
            """SELECT a.code,
                      coalesce(sum(e.amount) FILTER (WHERE e.created_at < :s), 0),
                      coalesce(sum(e.amount) FILTER (WHERE e.created_at >= :s AND e.amount > 0), 0),
                      coalesce(-sum(e.amount) FILTER (WHERE e.created_at >= :s AND e.amount < 0), 0)
                 FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
                WHERE e.created_at < :e GROUP BY a.code"""
        )
    }
    assert {
        x["account_code"]: (x["opening"], x["debits"], x["credits"]) for x in tb["accounts"]
    } == {c: v for c, v in ledger.items() if v != (0, 0, 0)}
    for x in tb["accounts"]:
        assert x["closing"] == x["opening"] + x["debits"] - x["credits"]
    for t in tb["ledgers"]:
        assert t["opening"] == 0 and t["closing"] == 0 and t["debits"] == t["credits"], t
    inr = next(t for t in tb["ledgers"] if t["ledger"] == "INR")
    assert inr["debits"] == sum(
        v[1] for c, v in ledger.items() if c.startswith(("inr:", "community:", "partner:"))
    )

    # The GST summary: the documents of the period, to the paisa; and their tax is the GST
    # the ledger booked (credit purchases only here: an invoice per purchase, a credit note
    # per refund).
    gst = (await _get(stack, "/v1/analytics/gst-summary", period)).json()
    docs = await books.rows(
        """SELECT kind, count(*), sum(taxable_paise), sum(cgst_paise), sum(sgst_paise),
                  sum(igst_paise), sum(total_paise)
             FROM invoices WHERE issued_at >= :s AND issued_at < :e GROUP BY kind"""
    )
    by_kind = {k: tuple(int(v) for v in rest) for k, *rest in docs}
    fields = ("documents", "taxable_paise", "cgst_paise", "sgst_paise", "igst_paise", "total_paise")
    assert tuple(gst["outward"][f] for f in fields) == by_kind.get("tax_invoice", (0,) * 6)
    assert tuple(gst["credit_notes"][f] for f in fields) == by_kind.get("credit_note", (0,) * 6)
    net_tax = gst["net"]["cgst_paise"] + gst["net"]["sgst_paise"] + gst["net"]["igst_paise"]
    assert net_tax == await books.legs("inr:gst_payable")
    assert gst["net"]["taxable_paise"] == await books.legs(
        "inr:deferred_revenue", kinds=("payment.captured", "refund.owed")
    )
    return {"totals": totals, "tb": tb, "gst": gst}


async def test_the_figures_equal_the_books_to_the_paisa(
    stacks: StackFactory, mongodb: MongoTarget
) -> None:
    stack = await stacks()
    community = f"c-{uuid.uuid4().hex[:10]}"
    async with communities(mongodb) as coll:
        await coll.insert_one(
            {"_id": community, "name": "Quiz", "owner_ids": [], "status": "active"}
        )
    # Three credited purchases of ₹300 by people, one by a registered business (its billing
    # profile's GSTIN in Maharashtra, 27; the seller is in 29: IGST, a B2B invoice), one
    # failed order.
    buyers = [await stack.credited() for _ in range(3)]
    business = stack.token()
    profile = await stack.api.put(
        "/v1/billing-profile", json=B2B_PROFILE, headers={"Authorization": f"Bearer {business}"}
    )
    assert profile.status_code in (200, 201), profile.text
    b2b_order = await stack.buy(business)
    await stack.pay(b2b_order)
    await stack.wait_status(business, b2b_order["id"], {"CREDITED"})
    failed_tok = stack.token()
    failed = await stack.buy(failed_tok)
    await stack.pay(failed, "upi", "failure")
    await stack.wait_status(failed_tok, failed["id"], {"FAILED"})
    # A full refund of the first, a community spend and a platform debit by the second.
    refund = await stack.refund(buyers[0][1]["id"])
    assert refund.status_code == 202, refund.text
    await stack.wait_refund(refund.json()["id"], {"SUCCESS"})
    tok, paid = buyers[1]
    spend = await stack.api.post(
        f"/v1/communities/{community}/spends",
        json={"credits": 500, "reason": "quiz night"},
        headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert spend.status_code in (200, 201), spend.text
    debit = await stack.api.post(
        f"/v1/wallets/{paid['wallet_id']}/debits",
        json={"credits": 100, "reason": "storage"},
        headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert debit.status_code in (200, 201), debit.text
    # The documents are issued by the invoice consumer: three invoices, one credit note.
    await _eventually(stack, "SELECT count(*) FROM invoices WHERE kind = 'tax_invoice'", 4)
    await _eventually(stack, "SELECT count(*) FROM invoices WHERE kind = 'credit_note'", 1)
    # The analytics consumer recomputed today's buckets on those events.
    day = today()
    await _eventually(stack, "SELECT count(*) FROM analytics_days WHERE day = :d", 1, d=day)

    # Yesterday too: a run just after midnight IST keeps its rows in the window.
    period = Period(day - timedelta(days=1), day)
    live = await _check_against_the_books(stack, period)
    totals = live["totals"]
    # Real figures, not only agreement: ₹1,200 in, ₹300 back, one failure in five.
    assert (
        totals["payments_created"],
        totals["payments_succeeded"],
        totals["payments_failed"],
    ) == (5, 4, 1)
    assert totals["success_rate_bp"] == 8000
    assert (
        totals["collected_paise"],
        totals["refunded_paise"],
        totals["refunds_paid_paise"],
    ) == (120000, 30000, 30000)
    assert totals["refund_rate_bp"] == 2500 and totals["refunds_succeeded"] == 1
    assert totals["community_earnings_paise"] > 0 and totals["revenue_recognized_paise"] > 0
    gst = live["gst"]
    assert gst["outward"]["documents"] == 4 and gst["credit_notes"]["documents"] == 1
    b2b = [x for x in gst["lines"] if x["section"] == "b2b"]
    assert [(x["place_of_supply"], x["documents"], x["total_paise"]) for x in b2b] == [
        ("27", 1, 30000)
    ]
    assert b2b[0]["igst_paise"] > 0 and b2b[0]["cgst_paise"] == b2b[0]["sgst_paise"] == 0
    assert {x["section"] for x in gst["lines"]} == {"b2b", "b2cs"}

    # The rollup buckets: recompute both days, mark them recomputed after they ended, so
    # reads come from the buckets; every figure is still the ledger's.
    for d in period.each_day():
        await in_transaction(stack.engine, lambda c, d=d: rollups.refresh_day(c, d))
        await stack.execute(
            "UPDATE analytics_days SET refreshed_at = :at WHERE day = :d",
            d=d,
            at=day_start(d + timedelta(days=1)) + rollups.SETTLE_GRACE,
        )
    rolled = await _check_against_the_books(stack, period)
    assert rolled == live

    # A repeated event and a rebuild count nothing twice. The consumer's handler also writes
    # the community's day to MongoDB: one spend of 500 credits by one member.
    handler = AnalyticsRollups(stack.settings)
    event = new_envelope("payment.credited", {"payment_id": paid["id"]})
    try:
        for _ in range(2):
            await in_transaction(stack.engine, lambda c: handler(c, event))
    finally:
        await handler.activity.aclose()
    async with communities(mongodb) as coll:
        found = await coll.database[COLLECTION].find_one({"_id": document_id(community, day)})
    assert found is not None
    assert (found["spends"], found["credits_spent"], found["active_members"]) == (1, 500, 1)
    assert await rollups.rebuild(stack.engine, period) == 2
    for d in period.each_day():
        await stack.execute(
            "UPDATE analytics_days SET refreshed_at = :at WHERE day = :d",
            d=d,
            at=day_start(d + timedelta(days=1)) + rollups.SETTLE_GRACE,
        )
    assert await _check_against_the_books(stack, period) == live

    # CSV says what JSON says.
    tb_csv = (await _get(stack, "/v1/analytics/trial-balance", period, format="csv")).text
    rows = list(csv.DictReader(io.StringIO(tb_csv)))
    totals_csv = {r["ledger"]: r for r in rows if r["account_code"] == "TOTAL"}
    for t in live["tb"]["ledgers"]:
        assert int(totals_csv[t["ledger"]]["debits"]) == t["debits"]
    gst_csv = list(
        csv.DictReader(
            io.StringIO((await _get(stack, "/v1/analytics/gst-summary", period, format="csv")).text)
        )
    )
    net = next(r for r in gst_csv if r["section"] == "total_net")
    assert int(net["igst_paise"]) + int(net["cgst_paise"]) + int(net["sgst_paise"]) == (
        live["gst"]["net"]["cgst_paise"]
        + live["gst"]["net"]["sgst_paise"]
        + live["gst"]["net"]["igst_paise"]
    )

    # MongoDB away: the community documents are only logged as not written; the financial
    # rollups are recomputed all the same.
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    away = CommunityActivity(
        stack.settings.model_copy(
            update={
                "mongodb_url": SecretStr(f"mongodb://127.0.0.1:{closed}/"),
                "mongodb_timeout_s": 0.5,
            }
        )
    )
    try:
        async with stack.engine.connect() as conn:
            assert await away.write_day_or_log(conn, day) is False
        assert day in await rollups.refresh_due(stack.engine, away)
    finally:
        await away.aclose()
