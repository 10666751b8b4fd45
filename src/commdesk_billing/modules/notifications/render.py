"""Notifications rendered from the template files beside this one (`templates/`).

A template is plain text: its first line `Subject: …`, a blank line, then the body, with
`$name` placeholders (`string.Template`). Every value is text a catalog view made
(`catalog.py`): amounts already written as ₹ with paise and credits as whole numbers, so
nothing here does arithmetic. The HTML part is the text body inside `layout.html`, every
value escaped (links made clickable after escaping); a placeholder a view did not fill is an
error, never an empty gap.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from importlib import resources
from string import Template

from commdesk_billing.modules.invoices.words import indian_grouping, rupees
from commdesk_billing.modules.notifications.model import Rendered

_IST = timezone(timedelta(hours=5, minutes=30), "IST")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Run on escaped text: `&` is there as `&amp;`, and quotes as entities.
_LINK = re.compile(r"https?://[^\s<>]+")


@cache
def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text("utf-8")


def template_names() -> set[str]:
    """Every notification template there is (the layout aside)."""
    folder = resources.files(__package__).joinpath("templates")
    return {p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt")}


def render(template: str, values: dict[str, str]) -> Rendered:
    first, _, body = Template(_template(f"{template}.txt")).substitute(values).partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"template {template} does not start with a Subject line")
    subject = plain(first.removeprefix("Subject: "), 200)
    text = body.strip("\n") + "\n"
    paragraphs = "\n".join(
        f"<p>{_links(html.escape(p)).replace(chr(10), '<br>')}</p>"
        for p in text.strip().split("\n\n")
    )
    page = Template(_template("layout.html")).substitute(
        subject=html.escape(subject), body=paragraphs
    )
    return Rendered(subject=subject, text=text, html=page)


def _links(escaped: str) -> str:
    return _LINK.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)


# --- How values are written (views in catalog.py use these, and only these) -----------


def inr(paise: int) -> str:
    """'₹1,23,456.78' for 12345678 paise."""
    return f"₹{rupees(paise)}"


def credits(n: int) -> str:
    """'1,200 credits' (Indian grouping; negative for an overdraft)."""
    sign = "-" if n < 0 else ""
    return f"{sign}{indian_grouping(abs(n))} {'credit' if abs(n) == 1 else 'credits'}"


def when(value: str) -> str:
    """An ISO date ('7 Dec 2026') or time ('7 Dec 2026, 14:30 IST'), as people read it."""
    if len(value) == 10:
        return f"{date.fromisoformat(value):%-d %b %Y}"
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return f"{at.astimezone(_IST):%-d %b %Y, %H:%M} IST"


def plain(value: str, limit: int = 200) -> str:
    """Outside text made one line (no header can be injected through a subject) and short."""
    one_line = _CONTROL.sub(" ", value).strip()
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"
