"""The console's analytics page (`/console/analytics`) and its CSV downloads
(`/console/analytics/<report>.csv`): the API's reports (`modules/analytics/service`) for a
period, read in one snapshot, drawn as server-side SVG charts and tables; the CSV is the
API's own rendering (`analytics/csvout`), so a download here and `?format=csv` there are
the same bytes, without a bearer token in the browser.

Who reads: as the API (`analytics/auth`: finance_admin and the auditor)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.responses import Response

from commdesk_billing.console import web
from commdesk_billing.console.charts import Chart, Series, lines, stacked_bars
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import Forbidden, InvalidPeriod
from commdesk_billing.modules.analytics import auth, csvout, service
from commdesk_billing.modules.analytics.models import (
    Daily,
    GstSummary,
    PaymentsDaily,
    Summary,
    TrialBalance,
)
from commdesk_billing.modules.analytics.periods import Period, parse_period, today
from commdesk_billing.modules.invoices.words import indian_grouping, rupees

router = APIRouter(prefix="/console", include_in_schema=False)

DEFAULT_DAYS = 30


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def default_period() -> Period:
    last = today()
    return Period(last - timedelta(days=DEFAULT_DAYS - 1), last)


def _period(request: Request) -> tuple[dict[str, str], Period | None, str | None]:
    """The period asked (`from`, `to`; both blank: the last 30 days), or what is wrong."""
    q = request.query_params
    shown = {"from": q.get("from", "")[:20], "to": q.get("to", "")[:20]}
    if not shown["from"] and not shown["to"]:
        period = default_period()
        return {"from": str(period.first), "to": str(period.last)}, period, None
    try:
        return shown, parse_period(shown["from"], shown["to"]), None
    except InvalidPeriod as exc:
        return shown, None, exc.detail.replace("`", "")


# --- labels: integers in, text out (money never a float) ---------------------------------


def inr(paise: int) -> str:
    """'₹1,200.00'; a negative amount '-₹720.35' (the sign before the symbol)."""
    return f"-₹{rupees(-paise)}" if paise < 0 else f"₹{rupees(paise)}"


def inr_axis(paise: int) -> str:
    """Whole rupees on an axis (a nice axis top is whole rupees above ₹1)."""
    whole, fraction = divmod(paise, 100)
    return f"₹{count(whole)}" if fraction == 0 else inr(paise)


def count(n: int) -> str:
    return f"-{indian_grouping(-n)}" if n < 0 else indian_grouping(n)


def percent(bp: int | None) -> str:
    """Basis points as a percentage with two decimals (floored, as the figure is)."""
    if bp is None:
        return "—"
    whole, part = divmod(bp, 100)
    return f"{whole}.{part:02d} %"


def percent_axis(bp: int) -> str:
    whole, part = divmod(bp, 100)
    return f"{whole} %" if part == 0 else percent(bp)


# --- the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    summary: Summary
    daily: Daily
    payments: PaymentsDaily
    trial_balance: TrialBalance
    gst: GstSummary


async def read_report(engine: AsyncEngine, period: Period) -> Report:
    # One transaction: one snapshot, so the charts, figures and tables agree.
    async def work(conn: AsyncConnection) -> Report:
        return Report(
            summary=await service.summary(conn, period),
            daily=await service.daily(conn, period),
            payments=await service.payments_daily(conn, period),
            trial_balance=await service.trial_balance(conn, period),
            gst=await service.gst_summary(conn, period),
        )

    return await in_transaction(engine, work)


def _payments_by_outcome(report: Report) -> list[Series]:
    days = report.daily.days
    index = {d.day: i for i, d in enumerate(days)}
    groups: dict[str, list[int | None]] = defaultdict(lambda: [0] * len(days))
    for line in report.payments.lines:
        if line.status in service.SUCCEEDED:
            group = "succeeded"
        elif line.status in service.FAILED:
            group = "failed"
        else:
            group = "not finished"
        values = groups[group]
        values[index[line.day]] = (values[index[line.day]] or 0) + line.payments
    return [
        Series(name, groups[name] if name in groups else [0] * len(days))
        for name in ("succeeded", "failed", "not finished")
    ]


def charts(report: Report) -> list[Chart]:
    days = [d.day for d in report.daily.days]
    each = report.daily.days
    t = report.summary.totals

    def series(name: str, field: str) -> Series:
        return Series(name, [getattr(d, field) for d in each])

    other_recharges = Series(
        "not succeeded", [d.auto_recharges - d.auto_recharges_succeeded for d in each]
    )
    return [
        stacked_bars(
            "chart-payments",
            "Payments a day, by status",
            days,
            _payments_by_outcome(report),
            axis=count,
            label=count,
            total=f"{count(t.payments_created)} orders",
        ),
        lines(
            "chart-success",
            "Success rate",
            days,
            [series("paid of finished", "success_rate_bp")],
            axis=percent_axis,
            label=percent,
            total=percent(t.success_rate_bp),
            top=10_000,
        ),
        lines(
            "chart-revenue",
            "Revenue: recognized, deferred, fees",
            days,
            [
                series("recognized", "revenue_recognized_paise"),
                series("deferred added", "deferred_added_paise"),
                series("deferred released", "deferred_released_paise"),
                series("fees", "fees_paise"),
            ],
            axis=inr_axis,
            label=inr,
            total=f"{inr(t.revenue_recognized_paise)} recognized",
            least=100,
        ),
        stacked_bars(
            "chart-refunds",
            "Refunds",
            days,
            [series("refunded", "refunded_paise")],
            axis=inr_axis,
            label=inr,
            total=f"{inr(t.refunded_paise)} · rate {percent(t.refund_rate_bp)}",
            least=100,
        ),
        stacked_bars(
            "chart-recharges",
            "Auto-recharges",
            days,
            [series("succeeded", "auto_recharges_succeeded"), other_recharges],
            axis=count,
            label=count,
            total=f"{count(t.auto_recharges)} triggered · {inr(t.auto_recharge_paise)}",
        ),
        lines(
            "chart-community",
            "Community earnings and settlements",
            days,
            [
                series("earned", "community_earnings_paise"),
                series("settled (gross)", "community_settled_paise"),
                series("paid out (net)", "payouts_paid_paise"),
            ],
            axis=inr_axis,
            label=inr,
            total=f"{inr(t.community_earnings_paise)} earned",
            least=100,
        ),
        stacked_bars(
            "chart-fraud",
            "Fraud events",
            days,
            [series("events", "fraud_events")],
            axis=count,
            label=count,
            total=f"{count(t.fraud_events)} events",
        ),
    ]


def headline(report: Report) -> list[tuple[str, str, str]]:
    """(element id, label, figure) for the tiles above the charts."""
    t = report.summary.totals
    return [
        ("fig-collected", "collected", inr(t.collected_paise)),
        ("fig-payments", "payments paid", f"{count(t.payments_succeeded)}"),
        ("fig-success-rate", "success rate", percent(t.success_rate_bp)),
        ("fig-recognized", "revenue recognized", inr(t.revenue_recognized_paise)),
        ("fig-deferred", "deferred at the end", inr(report.summary.deferred_revenue_closing_paise)),
        ("fig-fees", "fees", inr(t.fees_paise)),
        ("fig-refunded", "refunded", inr(t.refunded_paise)),
        ("fig-refund-rate", "refund rate", percent(t.refund_rate_bp)),
        ("fig-gst", "GST collected", inr(t.gst_collected_paise)),
        ("fig-earnings", "community earnings", inr(t.community_earnings_paise)),
        ("fig-paid-out", "paid out to communities", inr(t.payouts_paid_paise)),
        ("fig-fraud", "fraud events", count(t.fraud_events)),
    ]


@router.get("/analytics")
async def analytics_page(request: Request) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    try:
        auth.may_read(viewer.signed_in.principal)
    except Forbidden as exc:
        return web.render(request, "forbidden.html", status=403, viewer=viewer, detail=exc.detail)
    shown, period, error = _period(request)
    report = None if period is None else await read_report(_engine(request), period)
    return web.render(
        request,
        "analytics.html",
        status=422 if error else 200,
        viewer=viewer,
        shown=shown,
        error=error,
        period=period,
        report=report,
        charts=charts(report) if report else [],
        headline=headline(report) if report else [],
        money=inr,
        amount=lambda ledger, value: inr(value) if ledger == "INR" else count(value),
        percent=percent,
    )


# --- CSV downloads ------------------------------------------------------------------------

Render = Callable[[AsyncConnection, Period], Awaitable[Any]]
CSV_REPORTS: dict[str, tuple[Render, Callable[[Any], str], str]] = {
    "daily": (service.daily, csvout.daily, "daily"),
    "payments": (service.payments_daily, csvout.payments_daily, "payments"),
    "trial-balance": (service.trial_balance, csvout.trial_balance, "trial_balance"),
    "gst-summary": (service.gst_summary, csvout.gst_summary, "gst_summary"),
}


@router.get("/analytics/{report}.csv")
async def analytics_csv(request: Request, report: str) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    try:
        auth.may_read(viewer.signed_in.principal)
    except Forbidden as exc:
        return web.render(request, "forbidden.html", status=403, viewer=viewer, detail=exc.detail)
    if report not in CSV_REPORTS:
        return web.render(
            request, "not_found.html", status=404, viewer=viewer, what="such a report"
        )
    shown, period, error = _period(request)
    if period is None:
        return web.render(
            request,
            "analytics.html",
            status=422,
            viewer=viewer,
            shown=shown,
            error=error,
            period=None,
            report=None,
            charts=[],
            headline=[],
            money=inr,
            amount=inr,
            percent=percent,
        )
    read, render, name = CSV_REPORTS[report]

    async def work(conn: AsyncConnection) -> Any:
        return await read(conn, period)

    body = render(await in_transaction(_engine(request), work))
    # As the API's `?format=csv` names it.
    disposition = f'attachment; filename="{name}_{period.first}_{period.last}.csv"'
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": disposition},
    )
