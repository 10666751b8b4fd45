"""CSV renderings of the reports, for a spreadsheet or a GST filing tool (`csvtable`: one
header row, one row per line; money in integer paise as in JSON; formula-looking text
quoted)."""

from __future__ import annotations

from pydantic import BaseModel

from commdesk_billing.csvtable import table
from commdesk_billing.modules.analytics.models import (
    Daily,
    GstSummary,
    GstTotals,
    PaymentsDaily,
    TrialBalance,
)

__all__ = ["daily", "gst_summary", "payments_daily", "table", "trial_balance"]


def _columns(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def daily(report: Daily) -> str:
    rows = [d.model_dump(mode="json") for d in report.days]
    columns = ["day", *[c for c in _columns(type(report.days[0])) if c != "day"]] if rows else []
    return table(columns, rows)


def payments_daily(report: PaymentsDaily) -> str:
    columns = ["day", "status", "method", "payments", "amount_paise"]
    return table(columns, (line.model_dump(mode="json") for line in report.lines))


def trial_balance(report: TrialBalance) -> str:
    """Account lines, then one `TOTAL` line per ledger."""
    columns = [
        "ledger",
        "account_code",
        "account_kind",
        "account_name",
        "normal_side",
        "opening",
        "debits",
        "credits",
        "closing",
    ]
    rows = [line.model_dump() for line in report.accounts]
    rows += [{**t.model_dump(), "account_code": "TOTAL"} for t in report.ledgers]
    return table(columns, rows)


def gst_summary(report: GstSummary) -> str:
    """GSTR-1 lines, then the totals: outward supplies, credit notes, net."""
    columns = [
        "section",
        "document_kind",
        "place_of_supply",
        "rate_bp",
        "documents",
        "taxable_paise",
        "cgst_paise",
        "sgst_paise",
        "igst_paise",
        "total_paise",
    ]
    rows = [line.model_dump() for line in report.lines]
    totals: list[tuple[str, GstTotals]] = [
        ("total_outward", report.outward),
        ("total_credit_notes", report.credit_notes),
        ("total_net", report.net),
    ]
    rows += [{**t.model_dump(), "section": name} for name, t in totals]
    return table(columns, rows)
