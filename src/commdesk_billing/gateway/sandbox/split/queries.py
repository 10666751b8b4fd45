"""The bodies of the settlement report calls (cashfree.md §7): `{pagination: {limit, cursor},
filters: {...}}`, checked, and the page they select.

`limit` is required, 1..1000 (the doc: "max 1000"); `cursor` is null the first time, then the
one the last page returned, until a page returns null. Dates are ISO-8601 with an offset or Z.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request
from commdesk_billing.gateway.sandbox.split.reports import decode_cursor, encode_cursor
from commdesk_billing.gateway.sandbox.validation import body_object

MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Query:
    limit: int
    offset: int
    settlement_ids: frozenset[int] | None
    utrs: frozenset[str] | None
    statuses: frozenset[str] | None
    start: datetime | None
    end: datetime | None

    def in_range(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (
            self.end is None or moment <= self.end
        )


def _bad(path: str, why: str) -> CashfreeError:
    return bad_request(f"{path.rsplit('.', 1)[-1]}_invalid", f"{path} : {why}")


def _date(raw: Any, path: str) -> datetime | None:
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise _bad(path, "should be an ISO-8601 time with an offset, e.g. 2026-04-01T00:00:00Z")
    return when


def _strings(raw: Any, path: str) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 1000 or not all(isinstance(v, str) for v in raw):
        raise _bad(path, "should be a list of strings")
    return frozenset(raw)


def _ids(raw: Any, path: str) -> frozenset[int] | None:
    # Strings in /settlements, integers in /settlement/recon (SDK6): both accepted.
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 1000:
        raise _bad(path, "should be a list of settlement ids")
    out = set()
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise _bad(path, "should be a list of settlement ids")
        out.add(int(value))
    return frozenset(out)


def query(body: Any, *, dates_required: bool = False, some_filter: bool = False) -> Query:
    obj = body_object(body)
    pagination = obj.get("pagination")
    if not isinstance(pagination, dict):
        raise bad_request("pagination_missing", "pagination : is missing in the request")
    limit = pagination.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise _bad("pagination.limit", f"should be a number from 1 to {MAX_LIMIT}")
    cursor = pagination.get("cursor")
    offset = 0
    if cursor is not None:
        decoded = decode_cursor(cursor) if isinstance(cursor, str) else None
        if decoded is None:
            raise _bad("pagination.cursor", "is not a cursor this API returned")
        offset = decoded
    filters = obj.get("filters")
    filters = {} if filters is None else filters
    if not isinstance(filters, dict):
        raise _bad("filters", "should be an object")
    q = Query(
        limit=limit,
        offset=offset,
        settlement_ids=_ids(filters.get("cf_settlement_ids"), "filters.cf_settlement_ids"),
        utrs=_strings(filters.get("settlement_utrs"), "filters.settlement_utrs"),
        statuses=_strings(filters.get("settlement_status"), "filters.settlement_status"),
        start=_date(filters.get("start_date"), "filters.start_date"),
        end=_date(filters.get("end_date"), "filters.end_date"),
    )
    if dates_required and (q.start is None or q.end is None):
        raise bad_request("filters_invalid", "filters : start_date and end_date are both required")
    if q.start is not None and q.end is not None and q.start > q.end:
        raise bad_request("filters_invalid", "filters : start_date is after end_date")
    if some_filter and q.settlement_ids is None and q.utrs is None and q.start is None:
        raise bad_request(
            "filters_missing",
            "filters : give cf_settlement_ids, settlement_utrs or start_date and end_date",
        )
    return q


def page(rows: Sequence[Any], q: Query) -> dict[str, Any]:
    chunk = list(rows[q.offset : q.offset + q.limit])
    more = q.offset + q.limit < len(rows)
    return {
        "cursor": encode_cursor(q.offset + q.limit) if more else None,
        "limit": q.limit,
        "data": chunk,
    }
