"""Draw a `TaxDocument` as an A4 PDF: a tax invoice or a credit note.

The layout carries what Rules 46 and 53 of the CGST Rules ask of a document for a supply of
services: supplier name, address and GSTIN; a serial number and date; the recipient (with GSTIN
when registered); place of supply with its state; description, SAC, quantity and taxable value;
the rate and amount of each tax; the total; whether tax is payable on reverse charge; and for a
credit note the invoice it credits.

Only the core Helvetica font is used, so no font file ships with the service. That font speaks
latin-1 only: the rupee sign is written "Rs." and any other character it cannot draw (names in
Devanagari, emoji, curly quotes) is transliterated or replaced with "?" before it reaches fpdf2,
so rendering a stored document never fails on its contents.

Dates are printed in Indian Standard Time: an invoice issued at 20:00 UTC on the 26th is dated
the 27th in India, and that is the date its recipient and the GST return know it by.

Drawing is one pass and cheap (about 2 ms of CPU a document): `_Layout` wraps and places the
text itself, measuring each string once with the core font's width table, and hands fpdf2 only
positioned strings and boxes to write out. fpdf2's multi_cell and tables, which re-measured each
line once per character added, cost more than ten times that.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple

from fpdf import FPDF
from fpdf.fonts import CORE_FONTS_CHARWIDTHS

from commdesk_billing.modules.invoices.document import DocumentKind, TaxDocument
from commdesk_billing.modules.invoices.states import state_name
from commdesk_billing.modules.invoices.words import amount_in_words, indian_grouping, rupees

IST = timezone(timedelta(hours=5, minutes=30), "IST")

FOOTER_TEXT = "This is a computer-generated document and needs no signature."

_FONT = "Helvetica"
_MARGIN = 15.0  # mm
_FOOTER_SPACE = 20.0  # mm kept free at the bottom of each page for the footer
_LINE = 4.6  # mm per line of 9 pt text
_GAP = 4.0  # mm between sections
_MAX_CELL_CHARS = 1000  # about 25 lines in the description column: well under a page
_SHADE = (235, 238, 242)
_INK = (20, 20, 20)
_MUTED = (90, 90, 90)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Characters people paste from word processors and phones that have a plain latin-1 spelling.
_TRANSLITERATIONS = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2212": "-",
        "\u2022": "*",
        "\u2026": "...",
        "\u20ac": "EUR",
        "\u20b9": "Rs.",
        "\u2122": "(TM)",
    }
)


def latin1(text: str) -> str:
    """`text` reduced to what the core PDF fonts can draw; never raises.

    Accented letters outside latin-1 lose their accent ("Dvořák" -> "Dvorák"); anything with no
    latin-1 base ("Ł", Devanagari, emoji) becomes "?" so the reader can see something was there.
    Line breaks survive; other control characters become spaces.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_TRANSLITERATIONS)
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        category = unicodedata.category(ch)
        if ch == "\n":
            out.append(ch)
        elif category == "Cc":
            out.append(" ")
        elif category in ("Cf", "Mn", "Me"):
            # Joiners, direction marks, variation selectors, combining accents: invisible on
            # their own, and a "?" for each would garble an otherwise readable name.
            continue
        elif ord(ch) < 256:
            out.append(ch)
        else:
            base = "".join(
                c
                for c in unicodedata.normalize("NFKD", ch)
                if ord(c) < 256 and unicodedata.category(c) not in ("Cc", "Cf", "Mn")
            )
            out.append(base or "?")
    return "".join(out)


def _date(moment: datetime) -> str:
    local = _as_ist(moment)
    return f"{local.day:02d} {_MONTHS[local.month - 1]} {local.year}"


def _as_ist(moment: datetime) -> datetime:
    # A naive datetime here came from our own UTC clock; reading it as local time would make the
    # printed date depend on the server's timezone.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(IST)


def _percent(basis_points: int, parts: int = 1) -> str:
    """`basis_points / parts` as a percentage: (1800, 2) -> "9%", (1250, 2) -> "6.25%"."""
    # Integers only (money-path rule); 1/100000 % is finer than any GST rate split in two.
    scaled = basis_points * 1000 // parts
    whole, fraction = divmod(scaled, 100_000)
    decimals = f"{fraction:05d}".rstrip("0")
    return f"{whole}.{decimals}%" if decimals else f"{whole}%"


def _state(code: str | None) -> str:
    if not code:
        return "Not stated"
    name = state_name(code)
    return f"{name} (Code {code})" if name else f"Unknown (Code {code})"


# One line of a details block: (text, bold).
_Line = tuple[str, bool]

_PAGE_W = 210.0  # A4, mm
_PAGE_H = 297.0
_EPW = _PAGE_W - 2 * _MARGIN
_BOTTOM = _PAGE_H - _FOOTER_SPACE  # content stops here; the footer lives below
_CELL_MARGIN = 1.0  # mm of air either side of a free-standing cell's text (fpdf2's default)
_PAD_X = 1.5  # mm of air either side of a table cell's text
_PAD_Y = 1.2  # mm above and below a table row's text
_MM_PER_PT = 25.4 / 72
_WHITE = (255, 255, 255)

# Character widths (1/1000 em) of the core Helvetica faces, from fpdf2's own tables: the
# layout measures text itself, once, instead of through fpdf2's line breaker, which measured
# every line again for each character added and was most of a document's CPU time.
_WIDTHS: dict[str, dict[str, int]] = {
    "": CORE_FONTS_CHARWIDTHS["helvetica"],
    "B": CORE_FONTS_CHARWIDTHS["helveticaB"],
    "I": CORE_FONTS_CHARWIDTHS["helveticaI"],
}

_RGB = tuple[int, int, int]


class _Text(NamedTuple):
    x: float
    baseline: float
    text: str
    style: str
    size: float
    color: _RGB


class _Box(NamedTuple):
    x: float
    y: float
    w: float
    h: float
    fill: _RGB | None
    border: bool


def _width(text: str, style: str, size: float) -> float:
    """`text`'s width in mm (already latin-1: `latin1`)."""
    return sum(map(_WIDTHS[style].__getitem__, text)) * size * _MM_PER_PT / 1000


def _wrap(text: str, style: str, size: float, width: float) -> list[str]:
    """`text` in lines no wider than `width` mm, as fpdf2's multi_cell breaks it: at line
    breaks, then at spaces; a word wider than a line is cut where the line is full."""
    widths = _WIDTHS[style]
    char = widths.__getitem__
    limit = width * 1000 / (size * _MM_PER_PT)  # in 1/1000 em, to add up integers
    space = widths[" "]
    out: list[str] = []
    for paragraph in text.split("\n"):
        line: list[str] = []
        used = 0
        for word in paragraph.split(" "):
            w = sum(map(char, word))
            if line and used + space + w <= limit:
                line.append(word)
                used += space + w
                continue
            if line:
                out.append(" ".join(line))
            while w > limit and len(word) > 1:
                fits, taken = 0, 0
                while fits < len(word) and taken + widths[word[fits]] <= limit:
                    taken += widths[word[fits]]
                    fits += 1
                fits = max(fits, 1)
                out.append(word[:fits])
                word = word[fits:]
                w = sum(map(char, word))
            line, used = [word], w
        out.append(" ".join(line))
    return out


class _Ops:
    """Drawing operations at a running vertical position."""

    def __init__(self, y: float) -> None:
        self.ops: list[_Text | _Box] = []
        self.y = y

    def text(
        self,
        x: float,
        width: float,
        height: float,
        text: str,
        style: str,
        size: float,
        align: str,
        color: _RGB = _INK,
        margin: float = _CELL_MARGIN,
    ) -> None:
        """One line in the box (x, self.y, width, height), centred vertically where fpdf2's
        cell() puts it."""
        if align == "L":
            left = x + margin
        else:
            free = width - _width(text, style, size)
            left = x + (free / 2 if align == "C" else free - margin)
        baseline = self.y + height / 2 + 0.3 * size * _MM_PER_PT
        self.ops.append(_Text(left, baseline, text, style, size, color))


class _Layout(_Ops):
    """Places a document's text and boxes on pages, measuring each string once. The result
    is a list of drawing operations per page: the page count is known before anything is
    drawn, so "Page 1 of N" needs no second pass (nor fpdf2's "{nb}" alias, which would also
    rewrite that sequence inside a buyer's name or address)."""

    def __init__(self, running_title: str) -> None:
        super().__init__(_MARGIN)
        self.running_title = running_title
        self.pages: list[list[_Text | _Box]] = []
        self.page_top = _MARGIN
        self.new_page()

    def new_page(self) -> None:
        self.ops = []
        self.pages.append(self.ops)
        self.y = _MARGIN
        if len(self.pages) > 1:
            # A loose second page must still say which document it belongs to.
            self.text(_MARGIN, _EPW, 4, self.running_title, "", 8, "R", _MUTED)
            self.y += 4 + 2
        self.page_top = self.y

    def room(self, height: float) -> None:
        if self.y + height > _BOTTOM and self.y > self.page_top:
            self.new_page()

    def heading(self, x: float, width: float, title: str) -> None:
        self.room(5.5)
        self.ops.append(_Box(x, self.y, width, 5.5, _SHADE, False))
        self.text(x, width, 5.5, title.upper(), "B", 8, "L")
        self.y += 5.5 + 1

    def lines(self, x: float, width: float, wrapped: list[tuple[list[str], str]]) -> None:
        for rows, style in wrapped:
            for row in rows:
                self.room(_LINE)
                self.text(x, width, _LINE, row, style, 9, "L")
                self.y += _LINE

    def columns(
        self, left: tuple[str, Sequence[_Line]], right: tuple[str, Sequence[_Line]]
    ) -> None:
        """Two titled blocks side by side, or one under the other if they would not fit."""
        gutter = 6.0
        half = (_EPW - gutter) / 2
        halves = [_wrapped(lines, half) for _, lines in (left, right)]
        tallest = 6.5 + max(sum(len(rows) for rows, _ in w) for w in halves) * _LINE
        if self.y + tallest > _BOTTOM:
            # Side by side cannot break across a page cleanly; stacked, each block wraps and
            # flows onto the next page on its own.
            for title, lines in (left, right):
                self.heading(_MARGIN, _EPW, title)
                self.lines(_MARGIN, _EPW, _wrapped(lines, _EPW))
                self.y += _GAP
            return
        top = self.y
        for (title, _), wrapped, x in zip(
            (left, right), halves, (_MARGIN, _MARGIN + half + gutter), strict=True
        ):
            self.y = top
            self.heading(x, half, title)
            self.lines(x, half, wrapped)
        self.y = top + tallest + _GAP

    def table(
        self,
        x: float,
        widths: Sequence[float],
        aligns: Sequence[str],
        rows: Sequence[_Row],
        *,
        headings: int = 0,
    ) -> None:
        """Bordered rows (fpdf2's table look): each cell's text wrapped in its column and
        centred vertically; a row that does not fit starts a page, under the heading rows
        again. Heading rows never end a page on their own: they go with the first row."""
        laid = [self._row(widths, row) for row in rows]
        heights = [height for height, _ in laid]
        for index, (row, (height, cells)) in enumerate(zip(rows, laid, strict=True)):
            needed = sum(heights[index : headings + 1]) if index < headings else height
            if self.y + needed > _BOTTOM and self.y > self.page_top:
                self.new_page()
                if index >= headings:
                    for again, (h, c) in zip(rows[:headings], laid[:headings], strict=True):
                        self._draw_row(x, widths, aligns, again, h, c)
            self._draw_row(x, widths, aligns, row, height, cells)

    def _row(self, widths: Sequence[float], row: _Row) -> tuple[float, list[list[str]]]:
        style = "B" if row.bold else ""
        cells = [
            _wrap(text, style, 9, w - 2 * _PAD_X) for text, w in zip(row.cells, widths, strict=True)
        ]
        return max(len(c) for c in cells) * _LINE + 2 * _PAD_Y, cells

    def _draw_row(
        self,
        x: float,
        widths: Sequence[float],
        aligns: Sequence[str],
        row: _Row,
        height: float,
        cells: list[list[str]],
    ) -> None:
        style = "B" if row.bold else ""
        top = self.y
        for width, align, lines in zip(widths, aligns, cells, strict=True):
            self.ops.append(_Box(x, top, width, height, row.fill, True))
            self.y = top + (height - len(lines) * _LINE) / 2
            for line in lines:
                self.text(x, width, _LINE, line, style, 9, align, margin=_PAD_X)
                self.y += _LINE
            x += width
        self.y = top + height


class _Row(NamedTuple):
    cells: Sequence[str]
    bold: bool = False
    fill: _RGB | None = None


def _wrapped(lines: Sequence[_Line], width: float) -> list[tuple[list[str], str]]:
    out: list[tuple[list[str], str]] = []
    for text, bold in lines:
        style = "B" if bold else ""
        out.append((_wrap(latin1(text), style, 9, width - 2 * _CELL_MARGIN), style))
    return out


def _supplier_lines(doc: TaxDocument) -> list[_Line]:
    seller = doc.seller
    lines: list[_Line] = [(seller.name, True)]
    if seller.address:
        lines.append((seller.address, False))
    lines.append((f"GSTIN: {seller.gstin or 'Not stated'}", False))
    lines.append((f"State: {_state(seller.state_code)}", False))
    return lines


def _document_lines(doc: TaxDocument) -> list[_Line]:
    label = "Credit Note" if doc.kind is DocumentKind.credit_note else "Invoice"
    lines: list[_Line] = [
        (f"{label} No.: {doc.number}", True),
        (f"{label} Date: {_date(doc.issued_at)}", False),
    ]
    if doc.kind is DocumentKind.credit_note:
        lines.append((f"Original Invoice No.: {doc.original_number}", False))
        if doc.original_issued_at is not None:
            lines.append((f"Original Invoice Date: {_date(doc.original_issued_at)}", False))
    lines.append((f"Place of Supply: {_state(doc.place_of_supply)}", False))
    lines.append(("Tax Payable on Reverse Charge: No", False))
    if doc.kind is DocumentKind.credit_note:
        lines.append((f"Reason: {doc.reason or 'Not stated'}", False))
    return lines


def _recipient_lines(doc: TaxDocument) -> list[_Line]:
    buyer = doc.buyer
    lines: list[_Line] = [(buyer.name, True)]
    if buyer.address:
        lines.append((buyer.address, False))
    if buyer.email:
        lines.append((f"Email: {buyer.email}", False))
    lines.append((f"GSTIN: {buyer.gstin or 'Unregistered'}", False))
    lines.append((f"State: {_state(buyer.state_code)}", False))
    return lines


def _payment_lines(doc: TaxDocument) -> list[_Line]:
    if doc.gst_mode == "inclusive":
        pricing = "Prices were quoted inclusive of GST; the tax shown is part of the price paid."
    elif doc.gst_mode == "exclusive":
        pricing = "Prices were quoted exclusive of GST; the tax shown was added to the price."
    else:
        pricing = f"GST pricing: {doc.gst_mode}"
    lines: list[_Line] = [(f"Payment Reference: {doc.payment_reference}", False)]
    if doc.payment_mode:
        lines.append((f"Payment Mode: {doc.payment_mode}", False))
    if doc.payment_status:
        lines.append((f"Payment Status: {doc.payment_status}", False))
    return [
        *lines,
        (pricing, False),
        ("All amounts are in Indian Rupees (INR).", False),
    ]


def _tax_rows(doc: TaxDocument) -> list[tuple[str, int]]:
    if doc.cgst_paise or doc.sgst_paise or doc.igst_paise:
        intra = doc.cgst_paise != 0 or doc.sgst_paise != 0
        inter = doc.igst_paise != 0
    else:
        # Nothing charged (a zero rate, or a sum too small to carry tax): the heads still show
        # which tax applies, decided as gst.compute decides it.
        intra = doc.place_of_supply == doc.seller.state_code
        inter = not intra
    rows: list[tuple[str, int]] = []
    if intra:
        half = _percent(doc.rate_bp, 2)
        rows += [(f"CGST @ {half}", doc.cgst_paise), (f"SGST @ {half}", doc.sgst_paise)]
    if inter:
        rows.append((f"IGST @ {_percent(doc.rate_bp)}", doc.igst_paise))
    return rows


def _cell_text(text: str) -> str:
    # A table row cannot split across pages; a description this long is a bug upstream, and a
    # shortened line beats no document at all.
    text = latin1(text)
    return text if len(text) <= _MAX_CELL_CHARS else text[: _MAX_CELL_CHARS - 3] + "..."


def _line_items(layout: _Layout, doc: TaxDocument) -> None:
    # Documents issued before unit prices and per-line tax were recorded keep their old
    # table: a reprint shows what was issued.
    priced = all(i.unit_price_paise is not None and i.tax_paise is not None for i in doc.lines)
    titles = ["#", "Description", "SAC", "Quantity"]
    widths: list[float] = [7, 85, 18, 35]
    aligns = ["C", "L", "C", "R"]
    if priced:
        titles += ["Unit Price (Rs.)", "Taxable Value (Rs.)", "Tax (Rs.)"]
        widths = [6, 62, 14, 19, 23, 24, 22]
        aligns += ["R", "R", "R"]
    else:
        titles.append("Taxable Value (Rs.)")
        widths.append(35)
        aligns.append("R")
    # The columns are proportions of the full width.
    scale = _EPW / sum(widths)
    rows = [_Row(titles, bold=True, fill=_SHADE)]
    for index, item in enumerate(doc.lines, start=1):
        quantity = indian_grouping(item.quantity) if item.quantity >= 0 else str(item.quantity)
        cells = [
            str(index),
            _cell_text(item.description),
            _cell_text(item.sac),
            _cell_text(f"{quantity} {item.unit}"),
        ]
        if priced:
            cells.append(rupees(item.unit_price_paise or 0))
        cells.append(rupees(item.taxable_paise))
        if priced:
            cells.append(rupees(item.tax_paise or 0))
        rows.append(_Row(cells))
    layout.table(_MARGIN, [w * scale for w in widths], aligns, rows, headings=1)


def _totals(layout: _Layout, doc: TaxDocument) -> None:
    rows = [("Taxable Value", doc.taxable_paise), *_tax_rows(doc)]
    total_label = "Total Credit" if doc.kind is DocumentKind.credit_note else "Total"
    # Keep the figures and the amount in words on one page: a total split from its taxes is
    # the first thing an auditor queries.
    needed = (len(rows) + 1) * (_LINE + 2.4) + _GAP + 3 * _LINE
    if layout.y + needed > _BOTTOM:
        layout.new_page()
    table = [_Row((label, rupees(paise))) for label, paise in rows]
    table.append(_Row((f"{total_label} (Rs.)", rupees(doc.total_paise)), bold=True, fill=_SHADE))
    # 90 mm wide, against the right margin.
    layout.table(_MARGIN + _EPW - 90, (55, 35), ("L", "R"), table)


def _lay_out(doc: TaxDocument, title: str) -> _Layout:
    layout = _Layout(latin1(f"{title} {doc.number} (continued)"))
    layout.text(_MARGIN, _EPW, 9, title, "B", 16, "C")
    layout.y += 9
    layout.text(_MARGIN, _EPW, 4, "Original for Recipient", "", 8, "C", _MUTED)
    layout.y += 4 + _GAP

    layout.columns(("Supplier", _supplier_lines(doc)), ("Document", _document_lines(doc)))
    layout.columns(("Recipient", _recipient_lines(doc)), ("Payment", _payment_lines(doc)))

    _line_items(layout, doc)
    layout.y += _GAP
    _totals(layout, doc)
    layout.y += _GAP

    layout.room(_LINE)
    layout.text(_MARGIN, _EPW, _LINE, "Amount in Words", "B", 9, "L")
    layout.y += _LINE
    layout.lines(_MARGIN, _EPW, _wrapped([(amount_in_words(doc.total_paise), False)], _EPW))
    return layout


def _footer(pages: int, page: int) -> list[_Text | _Box]:
    top = _PAGE_H - _FOOTER_SPACE + 6
    footer = _Ops(top)
    footer.text(_MARGIN, _EPW, 4, FOOTER_TEXT, "I", 8, "C", _MUTED)
    footer.y += 4
    footer.text(_MARGIN, _EPW, 4, f"Page {page} of {pages}", "I", 8, "C", _MUTED)
    return footer.ops


def _draw(pdf: FPDF, ops: Sequence[_Text | _Box]) -> None:
    font: tuple[str, float] | None = None
    for op in ops:
        if isinstance(op, _Box):
            if op.fill is not None:
                pdf.set_fill_color(*op.fill)
            style = ("D" if op.border else "") + ("F" if op.fill is not None else "")
            pdf.rect(op.x, op.y, op.w, op.h, style=style)
        else:
            if font != (op.style, op.size):
                font = (op.style, op.size)
                pdf.set_font(_FONT, op.style, op.size)
            pdf.set_text_color(*op.color)
            pdf.text(op.x, op.baseline, op.text)


def render_pdf(doc: TaxDocument) -> bytes:
    """The PDF of `doc`; the same document always gives the same bytes. One pass: the layout
    measures and places everything, then fpdf2 only writes it out."""
    title = "Credit Note" if doc.kind is DocumentKind.credit_note else "Tax Invoice"
    pages = _lay_out(doc, title).pages
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    # Pages were decided by the layout; fpdf2 must not add any of its own.
    pdf.set_auto_page_break(False)
    # The page count is ours (the footer); fpdf2's "{nb}" substitution would rewrite that
    # sequence in a buyer's name or address.
    pdf.alias_nb_pages("")
    pdf.set_title(latin1(f"{title} {doc.number}"))
    pdf.set_author(latin1(doc.seller.name))
    pdf.set_creator("CommDesk Billing")
    pdf.set_lang("en-IN")
    # Same document, same bytes: the creation date (and the file ID hashed from it) come from
    # the document rather than the clock.
    pdf.set_creation_date(_as_ist(doc.issued_at))
    for number, ops in enumerate(pages, start=1):
        pdf.add_page()
        _draw(pdf, ops)
        _draw(pdf, _footer(len(pages), number))
    return bytes(pdf.output())
