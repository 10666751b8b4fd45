"""CSV for a spreadsheet: one header row, one row per line, CRLF line ends; money stays in
integer paise as in JSON, None is an empty cell. Text a spreadsheet would run as a formula
(starting = + - @, a tab or a carriage return) is prefixed with a quote. Shared by every
`?format=csv` answer (the analytics reports, the staff payments list)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def table(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return out.getvalue()
