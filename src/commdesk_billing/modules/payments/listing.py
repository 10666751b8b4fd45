"""`GET /v1/payments`: who sees whose payments, the filters, and the CSV export.

A member lists their own payments (as since the first version); STAFF_READERS list
everyone's and may name one user (`user`, a CommDesk subject). Filters are checked here so a
bad value is a 400 `invalid_payment_filter` naming the parameter, never an empty page the
caller would read as "none". The CSV is finance's (staff only), with the same filters and
cursor and pages of up to 5000 rows."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing import csvtable
from commdesk_billing.config import Settings
from commdesk_billing.errors import Forbidden, InvalidPaymentFilter, InvalidReportFormat
from commdesk_billing.modules.payments import auth
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.schemas import PaymentOut
from commdesk_billing.modules.payments.service import checkout_url
from commdesk_billing.modules.payments.state import Status
from commdesk_billing.modules.users import service as users
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.security.jwt import Principal
from commdesk_billing.security.roles import STAFF_READERS
from commdesk_billing.security.timestamps import in_window

JSON_LIMIT = 200
CSV_LIMIT = 5000
CURSOR_KIND = "p"
# Cashfree's payment method keys (upi, card, netbanking, app, …), lower case.
_METHOD = re.compile(r"^[a-z_]{1,32}$")

# The CSV's columns: the JSON's fields a spreadsheet needs, in the JSON's names and units,
# with the buyer's CommDesk subject (staff read everyone's).
CSV_COLUMNS = [
    "id",
    "order_id",
    "user",
    "created_at",
    "status",
    "kind",
    "channel",
    "pack_code",
    "payment_method",
    "payment_group",
    "amount_paise",
    "taxable_paise",
    "gst_amount_paise",
    "cgst_paise",
    "sgst_paise",
    "igst_paise",
    "currency",
    "credits",
    "credits_granted",
    "paid_at",
    "credited_at",
    "failure_code",
    "retry_of",
]


@dataclass(frozen=True)
class Filters:
    statuses: list[str] | None
    method: str | None
    created_from: datetime | None
    created_to: datetime | None
    user: str | None


def _timestamp(name: str, raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        return in_window(datetime.fromisoformat(raw))
    except ValueError as exc:
        raise InvalidPaymentFilter(
            f"`{name}` must be an ISO 8601 time with a UTC offset (e.g. "
            f"2026-12-01T00:00:00+05:30): {exc}",
            parameter=name,
        ) from exc


def _statuses(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    names = [s.strip() for s in raw.split(",")]
    known = {s.value for s in Status}
    wrong = [s for s in names if s not in known]
    if wrong or not names:
        raise InvalidPaymentFilter(
            f"`status` takes a comma-separated list of {', '.join(sorted(known))}",
            parameter="status",
            unknown=wrong,
        )
    return sorted(set(names))


def parse_filters(
    *,
    status: str | None,
    method: str | None,
    created_from: str | None,
    created_to: str | None,
    user: str | None,
) -> Filters:
    if method is not None and not _METHOD.match(method):
        raise InvalidPaymentFilter(
            "`method` is a payment method key such as upi or card", parameter="method"
        )
    start = _timestamp("created_from", created_from)
    end = _timestamp("created_to", created_to)
    if start is not None and end is not None and not start < end:
        raise InvalidPaymentFilter(
            "`created_from` must be before `created_to`", parameter="created_from"
        )
    return Filters(_statuses(status), method, start, end, user)


def wants_csv(fmt: str | None) -> bool:
    if fmt in (None, "", "json"):
        return False
    if fmt == "csv":
        return True
    raise InvalidReportFormat("`format` must be json or csv", parameter="format")


def authorize(caller: Principal, filters: Filters, *, csv: bool) -> bool:
    """Whether the caller lists everyone's payments (staff) rather than their own."""
    auth.authorize_buying(caller)  # services read no payments
    staff = caller.role in STAFF_READERS
    if not staff and filters.user is not None:
        raise Forbidden("only finance_admin, support and auditor list another user's payments")
    if not staff and csv:
        raise Forbidden("the CSV export is for finance_admin, support and auditor")
    return staff


def check_limit(limit: int, *, csv: bool) -> None:
    most = CSV_LIMIT if csv else JSON_LIMIT
    if limit > most:
        raise InvalidPaymentFilter(
            f"`limit` is at most {most} here (up to {CSV_LIMIT} with format=csv)",
            parameter="limit",
        )


@dataclass(frozen=True)
class Page:
    payments: list[Payment]
    next_cursor: str | None


async def page(
    conn: AsyncConnection,
    caller: Principal,
    filters: Filters,
    *,
    staff: bool,
    cursor: str | None,
    limit: int,
) -> Page:
    before = decode_cursor(CURSOR_KIND, cursor) if cursor else None
    subject = filters.user if staff else caller.sub
    user_id: uuid.UUID | None = None
    if subject is not None:
        user_id = await users.user_id_for(conn, subject)
        if user_id is None:  # never bought anything here
            return Page([], None)
    rows = await repo.list_filtered(
        conn,
        user_id=user_id,
        statuses=filters.statuses,
        method=filters.method,
        created_from=filters.created_from,
        created_to=filters.created_to,
        limit=limit + 1,
        before=before,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(CURSOR_KIND, rows[-1].created_at, rows[-1].id) if more else None
    return Page(rows, nxt)


async def csv_body(conn: AsyncConnection, settings: Settings, payments: list[Payment]) -> str:
    """The CSV of one page; values are the JSON's (`PaymentOut`), the buyer by subject."""
    subjects = await users.subjects_of(conn, [p.user_id for p in payments])
    rows: list[dict[str, Any]] = []
    for p in payments:
        row = PaymentOut.of(p, checkout_url(settings, p)).model_dump(mode="json")
        row["user"] = subjects.get(p.user_id)
        rows.append(row)
    return csvtable.table(CSV_COLUMNS, rows)
