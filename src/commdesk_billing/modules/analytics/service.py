"""The analytics services, importable by the finance console as well as the API: each takes
a connection and a validated `Period`, and returns a typed model (`models.py`).

Money figures come from the ledger (its per-day buckets, `reads.py`); counts from the
business rows (payments, refunds, auto-recharges, settlements, fraud events). The trial
balance and the GST summary are for the books: every ledger account, and every tax
document of the period."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import date

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.analytics import reads, sources
from commdesk_billing.modules.analytics.models import (
    Daily,
    DayFigures,
    Figures,
    FraudLine,
    GstLine,
    GstSummary,
    GstTotals,
    LedgerTotals,
    PaymentsDaily,
    PaymentsDayLine,
    PaymentsLine,
    StatusLine,
    Summary,
    TrialBalance,
    TrialBalanceLine,
)
from commdesk_billing.modules.analytics.periods import Period
from commdesk_billing.modules.analytics.sources import ActivityRow, LedgerRow
from commdesk_billing.modules.ledger.model import House

SUCCEEDED = frozenset({"PAID", "CREDITED", "REVIEW"})
FAILED = frozenset({"FAILED", "USER_DROPPED", "EXPIRED", "CANCELLED"})
# Journals that bring money in through the gateway (gateway clearing debited).
COLLECTION_KINDS = frozenset(
    {"payment.captured", "sponsorship.funded", "sponsorship.split_funded", "subscription.paid"}
)
SETTLEMENT_KINDS = frozenset({"settlement.created", "settlement.failed", "settlement.reversed"})
COMMUNITY_PAYABLE = "community_payable"


def _bp(part: int, whole: int) -> int | None:
    return part * 10_000 // whole if whole > 0 else None


def figures(
    ledger: Iterable[LedgerRow], activity: Iterable[ActivityRow], kinds: dict[uuid.UUID, str]
) -> Figures:
    """The figures of whatever rows are given (one day's, or a period's). `kinds`: each
    account's kind (community payables are found by it)."""
    credit_net: dict[uuid.UUID, int] = defaultdict(int)  # credits less debits
    debits: dict[uuid.UUID, int] = defaultdict(int)
    credits: dict[uuid.UUID, int] = defaultdict(int)
    collected = earnings = settled = paid_out = 0
    for r in ledger:
        credit_net[r.account_id] += r.credits - r.debits
        debits[r.account_id] += r.debits
        credits[r.account_id] += r.credits
        if r.account_id == House.GATEWAY_CLEARING and r.journal_kind in COLLECTION_KINDS:
            collected += r.debits
        if r.account_id == House.PAYOUTS_IN_TRANSIT and r.journal_kind == "settlement.paid":
            paid_out += r.debits
        if kinds.get(r.account_id) == COMMUNITY_PAYABLE:
            if r.journal_kind in SETTLEMENT_KINDS:
                settled += r.debits - r.credits
            else:
                earnings += r.credits - r.debits
    count: dict[tuple[str, str], int] = defaultdict(int)
    amount: dict[tuple[str, str], int] = defaultdict(int)
    payments_created = succeeded = failed = fraud = 0
    for a in activity:
        count[(a.metric, a.key1)] += a.events
        amount[(a.metric, a.key1)] += a.amount
        if a.metric == "payments":
            payments_created += a.events
            succeeded += a.events if a.key1 in SUCCEEDED else 0
            failed += a.events if a.key1 in FAILED else 0
        elif a.metric == "fraud_events":
            fraud += a.events
    platform_fee = credit_net[House.PLATFORM_FEE_REVENUE]
    sponsorship_fee = credit_net[House.SPONSORSHIP_FEE_REVENUE]
    payout_fee = credit_net[House.PAYOUT_FEE_REVENUE]
    refunded = credits[House.REFUNDS_PAYABLE]
    return Figures(
        payments_created=payments_created,
        payments_succeeded=succeeded,
        payments_failed=failed,
        success_rate_bp=_bp(succeeded, succeeded + failed),
        collected_paise=collected,
        revenue_recognized_paise=credit_net[House.PLATFORM_REVENUE],
        subscription_revenue_paise=credit_net[House.SUBSCRIPTION_REVENUE],
        fees_paise=platform_fee + sponsorship_fee + payout_fee,
        platform_fee_paise=platform_fee,
        sponsorship_fee_paise=sponsorship_fee,
        payout_fee_paise=payout_fee,
        breakage_paise=credit_net[House.BREAKAGE_REVENUE],
        deferred_added_paise=credits[House.DEFERRED_REVENUE],
        deferred_released_paise=debits[House.DEFERRED_REVENUE],
        gst_collected_paise=credit_net[House.GST_PAYABLE],
        refunds_requested=sum(n for (m, _), n in count.items() if m == "refunds"),
        refunds_succeeded=count[("refunds", "SUCCESS")],
        refunded_paise=refunded,
        refunds_paid_paise=debits[House.REFUNDS_PAYABLE],
        refund_rate_bp=_bp(refunded, collected),
        auto_recharges=sum(n for (m, _), n in count.items() if m == "auto_recharges"),
        auto_recharges_succeeded=count[("auto_recharges", "succeeded")],
        auto_recharge_paise=amount[("auto_recharges", "succeeded")],
        community_earnings_paise=earnings,
        community_settled_paise=settled,
        payouts_paid_paise=paid_out,
        settlements_created=sum(n for (m, _), n in count.items() if m == "settlements"),
        fraud_events=fraud,
    )


async def _account_kinds(conn: AsyncConnection, rows: list[LedgerRow]) -> dict[uuid.UUID, str]:
    found = await sources.accounts(conn, sorted({r.account_id for r in rows}))
    return {a: acc.kind for a, acc in found.items()}


def _status_lines(rows: list[ActivityRow], metric: str) -> list[StatusLine]:
    count: dict[str, int] = defaultdict(int)
    amount: dict[str, int] = defaultdict(int)
    for r in rows:
        if r.metric == metric:
            count[r.key1] += r.events
            amount[r.key1] += r.amount
    return [StatusLine(status=s, count=count[s], amount_paise=amount[s]) for s in sorted(count)]


async def summary(conn: AsyncConnection, period: Period) -> Summary:
    """The period's figures, with payments by status and method and the other breakdowns."""
    ledger = await reads.ledger_rows(conn, period)
    activity = await reads.activity_rows(conn, period)
    totals = figures(ledger, activity, await _account_kinds(conn, ledger))
    payments: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    fraud: dict[tuple[str, str], int] = defaultdict(int)
    for a in activity:
        if a.metric == "payments":
            payments[(a.key1, a.key2)][0] += a.events
            payments[(a.key1, a.key2)][1] += a.amount
        elif a.metric == "fraud_events":
            fraud[(a.key1, a.key2)] += a.events
    opening = await reads.balances_before(conn, period.first)
    deferred = opening.get(House.DEFERRED_REVENUE)
    deferred_closing = -(deferred.amount if deferred else 0) + (
        totals.deferred_added_paise - totals.deferred_released_paise
    )
    return Summary(
        date_from=period.first,
        date_to=period.last,
        totals=totals,
        deferred_revenue_closing_paise=deferred_closing,
        payments=[
            PaymentsLine(status=s, method=m, payments=n, amount_paise=amt)
            for (s, m), (n, amt) in sorted(payments.items())
        ],
        refunds=_status_lines(activity, "refunds"),
        auto_recharges=_status_lines(activity, "auto_recharges"),
        settlements=_status_lines(activity, "settlements"),
        fraud_events=[
            FraudLine(kind=k, severity=s, events=n) for (k, s), n in sorted(fraud.items())
        ],
    )


async def daily(conn: AsyncConnection, period: Period) -> Daily:
    """The period's figures day by day (every day present, zeros included)."""
    ledger = await reads.ledger_rows(conn, period)
    activity = await reads.activity_rows(conn, period)
    kinds = await _account_kinds(conn, ledger)
    by_day_l: dict[date, list[LedgerRow]] = defaultdict(list)
    by_day_a: dict[date, list[ActivityRow]] = defaultdict(list)
    for r in ledger:
        by_day_l[r.day].append(r)
    for a in activity:
        by_day_a[a.day].append(a)
    return Daily(
        date_from=period.first,
        date_to=period.last,
        days=[
            DayFigures(day=d, **figures(by_day_l[d], by_day_a[d], kinds).model_dump())
            for d in period.each_day()
        ],
    )


async def payments_daily(conn: AsyncConnection, period: Period) -> PaymentsDaily:
    """Payments by day, status and method."""
    lines = [
        PaymentsDayLine(
            day=a.day, status=a.key1, method=a.key2, payments=a.events, amount_paise=a.amount
        )
        for a in await reads.activity_rows(conn, period)
        if a.metric == "payments"
    ]
    lines.sort(key=lambda x: (x.day, x.status, x.method))
    return PaymentsDaily(date_from=period.first, date_to=period.last, lines=lines)


async def trial_balance(conn: AsyncConnection, period: Period) -> TrialBalance:
    """Every ledger account with a balance or a movement: its balance at the start of the
    period, what was debited and credited in it, and its balance at the end."""
    opening = await reads.balances_before(conn, period.first)
    moved: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0])
    ledger_of: dict[uuid.UUID, str] = {a: b.ledger for a, b in opening.items()}
    for r in await reads.ledger_rows(conn, period):
        moved[r.account_id][0] += r.debits
        moved[r.account_id][1] += r.credits
        ledger_of[r.account_id] = r.ledger
    ids = sorted(set(opening) | set(moved))
    info = await sources.accounts(conn, ids)
    lines: list[TrialBalanceLine] = []
    for account_id in ids:
        o = opening[account_id].amount if account_id in opening else 0
        d, c = moved.get(account_id, (0, 0))
        if o == 0 and d == 0 and c == 0:
            continue
        acc = info[account_id]
        lines.append(
            TrialBalanceLine(
                ledger=ledger_of[account_id],
                account_code=acc.code,
                account_kind=acc.kind,
                account_name=acc.name,
                normal_side=acc.normal_side,
                opening=o,
                debits=d,
                credits=c,
                closing=o + d - c,
            )
        )
    lines.sort(key=lambda line: (line.ledger, line.account_code))
    ledgers = [
        LedgerTotals(
            ledger=name,
            unit="paise" if name == "INR" else "credits",
            opening=sum(x.opening for x in lines if x.ledger == name),
            debits=sum(x.debits for x in lines if x.ledger == name),
            credits=sum(x.credits for x in lines if x.ledger == name),
            closing=sum(x.closing for x in lines if x.ledger == name),
        )
        for name in ("CREDITS", "INR")
    ]
    return TrialBalance(
        date_from=period.first, date_to=period.last, ledgers=ledgers, accounts=lines
    )


# GSTR-1: an inter-state supply to an unregistered buyer above ₹1,00,000 is B2CL (and its
# credit note CDNUR); below, B2CS (a credit note is netted there).
B2CL_ABOVE_PAISE = 1_00_000_00

_GST_SQL = """
    WITH docs AS (
        SELECT i.kind, i.place_of_supply, i.taxable_paise, i.cgst_paise, i.sgst_paise,
               i.igst_paise, i.total_paise,
               CAST(i.document->>'rate_bp' AS integer) AS rate_bp,
               coalesce(i.document->'buyer'->>'gstin', '') <> '' AS registered,
               (CASE WHEN i.kind = 'tax_invoice' THEN i.place_of_supply ELSE o.place_of_supply
                END) <> coalesce(i.document->'seller'->>'state_code', '') AS inter_state,
               CASE WHEN i.kind = 'tax_invoice' THEN i.total_paise ELSE o.total_paise
               END AS invoice_value
          FROM invoices i LEFT JOIN invoices o ON o.id = i.original_invoice_id
         WHERE i.issued_at >= :start AND i.issued_at < :end
    )
    SELECT CASE
             WHEN registered THEN CASE WHEN kind = 'tax_invoice' THEN 'b2b' ELSE 'cdnr' END
             WHEN inter_state AND invoice_value > :b2cl
               THEN CASE WHEN kind = 'tax_invoice' THEN 'b2cl' ELSE 'cdnur' END
             ELSE 'b2cs'
           END AS section,
           kind, place_of_supply, rate_bp, count(*), sum(taxable_paise), sum(cgst_paise),
           sum(sgst_paise), sum(igst_paise), sum(total_paise)
      FROM docs
     GROUP BY 1, kind, place_of_supply, rate_bp
     ORDER BY 1, kind, place_of_supply, rate_bp
"""


def _totals(lines: list[GstLine]) -> GstTotals:
    return GstTotals(
        documents=sum(x.documents for x in lines),
        taxable_paise=sum(x.taxable_paise for x in lines),
        cgst_paise=sum(x.cgst_paise for x in lines),
        sgst_paise=sum(x.sgst_paise for x in lines),
        igst_paise=sum(x.igst_paise for x in lines),
        total_paise=sum(x.total_paise for x in lines),
    )


async def gst_summary(conn: AsyncConnection, period: Period) -> GstSummary:
    """The period's tax documents (by their issue time) by GSTR-1 section, place of supply
    and rate: what a return is filed from. Read from the documents themselves (their
    figures never change once issued)."""
    rows = await conn.execute(
        sql(_GST_SQL), {"start": period.start, "end": period.end, "b2cl": B2CL_ABOVE_PAISE}
    )
    lines = [
        GstLine(
            section=r[0],
            document_kind=r[1],
            place_of_supply=r[2],
            rate_bp=int(r[3]),
            documents=int(r[4]),
            taxable_paise=int(r[5]),
            cgst_paise=int(r[6]),
            sgst_paise=int(r[7]),
            igst_paise=int(r[8]),
            total_paise=int(r[9]),
        )
        for r in rows
    ]
    outward = _totals([x for x in lines if x.document_kind == "tax_invoice"])
    notes = _totals([x for x in lines if x.document_kind == "credit_note"])
    net = GstTotals(
        documents=outward.documents + notes.documents,
        taxable_paise=outward.taxable_paise - notes.taxable_paise,
        cgst_paise=outward.cgst_paise - notes.cgst_paise,
        sgst_paise=outward.sgst_paise - notes.sgst_paise,
        igst_paise=outward.igst_paise - notes.igst_paise,
        total_paise=outward.total_paise - notes.total_paise,
    )
    return GstSummary(
        date_from=period.first,
        date_to=period.last,
        lines=lines,
        outward=outward,
        credit_notes=notes,
        net=net,
    )
