"""How `commdesk-billing` prints: tables with headers for people, `--json` for programs.

Every command that prints a result takes `--json` (one JSON document on stdout, nothing
else there); progress and errors go to stderr, so `--json` output can always be piped."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(fn: F) -> F:
    """The `--json` flag, passed to the command as `as_json`."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document (for programs)."
    )(fn)


def to_json(data: Any) -> str:
    # default=str: UUIDs, datetimes and enums print as their plain text.
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns left-aligned under their headers; an empty table says so."""
    if not rows:
        return "(none)"
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(as_json: bool, data: Any, text: str) -> None:
    """`data` as JSON with --json, else `text` for a person."""
    click.echo(to_json(data) if as_json else text)
