"""Financial analytics routes (finance_admin, auditor): `GET /v1/analytics/summary`,
`/daily`, `/payments`, `/trial-balance` and `/gst-summary`. Each takes `from` and `to` (YYYY-MM-DD,
Indian calendar days, both inclusive, at most 366 days); the reports also answer CSV with
`?format=csv`. The work is in `service.py`; this file only validates, authorizes and
renders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine
from commdesk_billing.errors import InvalidReportFormat
from commdesk_billing.modules.analytics import auth, csvout, service
from commdesk_billing.modules.analytics.models import (
    Daily,
    GstSummary,
    PaymentsDaily,
    Summary,
    TrialBalance,
)
from commdesk_billing.modules.analytics.periods import Period, parse_period
from commdesk_billing.problems import errors

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

# Each route names its own errors (problems.errors); 401, 429 and 503 are added for all.
_NOT_READER = "Not finance_admin or auditor (`forbidden`)"
_BAD_PERIOD = (
    "`from` or `to` missing or not a calendar date (YYYY-MM-DD), before 2000, `from` after "
    "`to` or in the future, or more than 366 days (`invalid_period`, with `parameter`)"
)


def _report_errors(report: str) -> dict[int | str, dict[str, Any]]:
    """The errors of a report that also answers CSV, and its 200 in CSV."""
    return {
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **errors(
            {
                400: f"{_BAD_PERIOD}; or `format` for the {report} neither json nor csv "
                "(`invalid_report_format`)",
                403: _NOT_READER,
            }
        ),
    }


# Documented as what they must be; checked here (`periods.parse_period`), so a bad value is
# a 400 `invalid_period` rather than the framework's 422.
From = Annotated[
    str | None,
    Query(
        alias="from",
        description="First day, YYYY-MM-DD (IST); required",
        json_schema_extra={"format": "date"},
    ),
]
To = Annotated[
    str | None,
    Query(
        description="Last day, inclusive, YYYY-MM-DD (IST); required, at most 366 days on",
        json_schema_extra={"format": "date"},
    ),
]
Format = Annotated[
    str | None,
    Query(description="`json` (the default) or `csv`", json_schema_extra={"enum": ["json", "csv"]}),
]

M = TypeVar("M", bound=BaseModel)


def _as_csv(fmt: str | None) -> bool:
    if fmt in (None, "", "json"):
        return False
    if fmt == "csv":
        return True
    raise InvalidReportFormat("`format` must be json or csv", parameter="format")


async def _read(
    engine: Any, period: Period, report: Callable[[AsyncConnection, Period], Awaitable[M]]
) -> M:
    # A read-only transaction: one snapshot, so every figure of a report agrees.
    async def work(conn: AsyncConnection) -> M:
        return await report(conn, period)

    return await in_transaction(engine, work)


def _csv_response(body: str, name: str, period: Period) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}_{period.first}_{period.last}.csv"'
        },
    )


@router.get(
    "/summary",
    response_model=Summary,
    response_model_by_alias=True,
    responses=errors({400: _BAD_PERIOD, 403: _NOT_READER}),
    summary="A period's figures: payments, revenue, refunds, auto-recharge, communities, "
    "fraud (finance_admin, auditor)",
)
async def get_summary(engine: Engine, caller: Caller, date_from: From = None, to: To = None) -> Any:
    """The totals of one period of Indian calendar days (`from` and `to` both included):
    payments and their success rate, money collected, revenue recognised by kind, GST,
    refunds, auto-recharges, community earnings and payouts, fraud events, with the
    breakdowns by status and the deferred revenue at the period's end. Money is integer
    paise; rates are basis points, null where nothing was attempted."""
    auth.may_read(caller)
    period = parse_period(date_from, to)
    return await _read(engine, period, service.summary)


@router.get(
    "/daily",
    response_model=Daily,
    response_model_by_alias=True,
    responses=_report_errors("daily figures"),
    summary="The summary's figures day by day (finance_admin, auditor)",
)
async def get_daily(
    engine: Engine, caller: Caller, date_from: From = None, to: To = None, format: Format = None
) -> Any:
    """The summary's totals for each Indian calendar day of the period, one entry per day
    (days with nothing happening included, at zero): what the finance console charts.
    `format=csv` answers the same table as a CSV download, one row per day."""
    auth.may_read(caller)
    period = parse_period(date_from, to)
    csv = _as_csv(format)
    report = await _read(engine, period, service.daily)
    return _csv_response(csvout.daily(report), "daily", period) if csv else report


@router.get(
    "/payments",
    response_model=PaymentsDaily,
    response_model_by_alias=True,
    responses=_report_errors("payments report"),
    summary="Payments by day, status and method (finance_admin, auditor)",
)
async def get_payments(
    engine: Engine, caller: Caller, date_from: From = None, to: To = None, format: Format = None
) -> Any:
    """How many payments, for how much, by the day their order was opened, their status
    and the payment method: only the combinations that occurred. Use it to see where
    checkouts fail or drop. `format=csv` answers the same lines as a CSV download."""
    auth.may_read(caller)
    period = parse_period(date_from, to)
    csv = _as_csv(format)
    report = await _read(engine, period, service.payments_daily)
    return _csv_response(csvout.payments_daily(report), "payments", period) if csv else report


@router.get(
    "/trial-balance",
    response_model=TrialBalance,
    response_model_by_alias=True,
    responses=_report_errors("trial balance"),
    summary="Every ledger account's opening, debits, credits and closing for a period "
    "(finance_admin, auditor)",
)
async def get_trial_balance(
    engine: Engine, caller: Caller, date_from: From = None, to: To = None, format: Format = None
) -> Any:
    """The trial balance of both ledgers (INR in paise, CREDITS in credits) over the
    period: each account's opening balance, debits, credits and closing, signed as the
    ledger is (a debit balance positive), and each ledger's column sums, which balance.
    For the accountant's books; `format=csv` answers the accounts as a CSV download."""
    auth.may_read(caller)
    period = parse_period(date_from, to)
    csv = _as_csv(format)
    report = await _read(engine, period, service.trial_balance)
    return _csv_response(csvout.trial_balance(report), "trial_balance", period) if csv else report


@router.get(
    "/gst-summary",
    response_model=GstSummary,
    response_model_by_alias=True,
    responses=_report_errors("GST summary"),
    summary="Tax invoices and credit notes by GSTR-1 section, place of supply and rate "
    "(finance_admin, auditor)",
)
async def get_gst_summary(
    engine: Engine, caller: Caller, date_from: From = None, to: To = None, format: Format = None
) -> Any:
    """The period's tax invoices and credit notes grouped as GSTR-1 wants them (section,
    place of supply, rate), with taxable value and CGST, SGST and IGST in paise, and the
    totals: outward, credit notes, and net. What the monthly GST return is filed from;
    `format=csv` answers the lines as a CSV download."""
    auth.may_read(caller)
    period = parse_period(date_from, to)
    csv = _as_csv(format)
    report = await _read(engine, period, service.gst_summary)
    return _csv_response(csvout.gst_summary(report), "gst_summary", period) if csv else report
