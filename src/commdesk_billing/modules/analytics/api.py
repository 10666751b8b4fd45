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
from commdesk_billing.problems import documented

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

_PROBLEMS = documented(
    {
        400: "`from`/`to` missing, not dates, the wrong way round or over 366 days "
        "(`invalid_period`), or `format` neither json nor csv (`invalid_report_format`)",
        401: "No valid bearer token",
        403: "Only finance_admin and auditor read financial analytics",
    }
)
_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
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
    responses=_PROBLEMS,
    summary="A period's figures: payments, revenue, refunds, auto-recharge, communities, "
    "fraud (finance_admin, auditor)",
)
async def get_summary(engine: Engine, caller: Caller, date_from: From = None, to: To = None) -> Any:
    auth.may_read(caller)
    period = parse_period(date_from, to)
    return await _read(engine, period, service.summary)


@router.get(
    "/daily",
    response_model=Daily,
    response_model_by_alias=True,
    responses={**_PROBLEMS, **_CSV},
    summary="The same figures day by day (finance_admin, auditor; CSV with ?format=csv)",
)
async def get_daily(
    engine: Engine, caller: Caller, date_from: From = None, to: To = None, format: Format = None
) -> Any:
    auth.may_read(caller)
    period = parse_period(date_from, to)
    csv = _as_csv(format)
    report = await _read(engine, period, service.daily)
    return _csv_response(csvout.daily(report), "daily", period) if csv else report


@router.get(
    "/payments",
    response_model=PaymentsDaily,
    response_model_by_alias=True,
    responses={**_PROBLEMS, **_CSV},
    summary="Payments by day, status and method (finance_admin, auditor; CSV with ?format=csv)",
)
async def get_payments(
    engine: Engine, caller: Caller, date_from: From = None, to: To = None, format: Format = None
) -> Any:
    auth.may_read(caller)
    period = parse_period(date_from, to)
    csv = _as_csv(format)
    report = await _read(engine, period, service.payments_daily)
    return _csv_response(csvout.payments_daily(report), "payments", period) if csv else report


@router.get(
    "/trial-balance",
    response_model=TrialBalance,
    response_model_by_alias=True,
    responses={**_PROBLEMS, **_CSV},
    summary="Every ledger account's opening, debits, credits and closing for a period "
    "(finance_admin, auditor; CSV with ?format=csv)",
)
async def get_trial_balance(
    engine: Engine, caller: Caller, date_from: From = None, to: To = None, format: Format = None
) -> Any:
    auth.may_read(caller)
    period = parse_period(date_from, to)
    csv = _as_csv(format)
    report = await _read(engine, period, service.trial_balance)
    return _csv_response(csvout.trial_balance(report), "trial_balance", period) if csv else report


@router.get(
    "/gst-summary",
    response_model=GstSummary,
    response_model_by_alias=True,
    responses={**_PROBLEMS, **_CSV},
    summary="Tax invoices and credit notes by GSTR-1 section, place of supply and rate "
    "(finance_admin, auditor; CSV with ?format=csv)",
)
async def get_gst_summary(
    engine: Engine, caller: Caller, date_from: From = None, to: To = None, format: Format = None
) -> Any:
    auth.may_read(caller)
    period = parse_period(date_from, to)
    csv = _as_csv(format)
    report = await _read(engine, period, service.gst_summary)
    return _csv_response(csvout.gst_summary(report), "gst_summary", period) if csv else report
