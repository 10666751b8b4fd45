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
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos
from fpdf.fonts import FontFace

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


class _DocumentPDF(FPDF):
    def __init__(self, running_title: str, total_pages: int | None) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.running_title = running_title
        # Known only after a first pass; fpdf2's own "{nb}" alias is off because it would also
        # rewrite that sequence inside a buyer's name or address.
        self.total_pages = total_pages
        self.alias_nb_pages("")
        self.set_margins(_MARGIN, _MARGIN, _MARGIN)
        self.set_auto_page_break(auto=True, margin=_FOOTER_SPACE)
        self.set_text_color(*_INK)

    def header(self) -> None:
        # A loose second page must still say which document it belongs to.
        if self.page_no() > 1:
            self.set_font(_FONT, "", 8)
            self.set_text_color(*_MUTED)
            self.cell(0, 4, self.running_title, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.set_text_color(*_INK)
            self.ln(2)

    def footer(self) -> None:
        self.set_y(-_FOOTER_SPACE + 6)
        self.set_font(_FONT, "I", 8)
        self.set_text_color(*_MUTED)
        self.cell(0, 4, FOOTER_TEXT, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        page = f"Page {self.page_no()}"
        if self.total_pages is not None:
            page += f" of {self.total_pages}"
        self.cell(0, 4, page, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*_INK)

    def heading(self, text: str, width: float) -> None:
        self.set_font(_FONT, "B", 8)
        self.set_fill_color(*_SHADE)
        self.cell(width, 5.5, text.upper(), fill=True, new_x=XPos.LEFT, new_y=YPos.NEXT)
        # fpdf2 tables take the current fill colour as their cells' background.
        self.set_fill_color(255)
        # Not ln(): that would send x back to the left margin and break the right column.
        self.set_xy(self.x, self.y + 1)

    def block_lines(self, lines: Sequence[_Line], width: float) -> None:
        for text, bold in lines:
            self.set_font(_FONT, "B" if bold else "", 9)
            self.multi_cell(width, _LINE, latin1(text), align="L", new_x=XPos.LEFT)

    def block_height(self, lines: Sequence[_Line], width: float) -> float:
        height = 6.5  # heading cell plus its gap
        for text, bold in lines:
            self.set_font(_FONT, "B" if bold else "", 9)
            result = self.multi_cell(
                width,
                _LINE,
                latin1(text),
                align="L",
                dry_run=True,
                output=MethodReturnValue.HEIGHT,
            )
            # fpdf2 types the result as a union over every `output` choice; HEIGHT gives a number.
            if isinstance(result, bool) or not isinstance(result, int | float):
                raise TypeError(f"multi_cell(output=HEIGHT) returned {type(result).__name__}")
            height += result
        return height

    def columns(
        self, left: tuple[str, Sequence[_Line]], right: tuple[str, Sequence[_Line]]
    ) -> None:
        """Two titled blocks side by side, or one under the other if they would not fit."""
        gutter = 6.0
        half = (self.epw - gutter) / 2
        tallest = max(self.block_height(left[1], half), self.block_height(right[1], half))
        if self.y + tallest > self.page_break_trigger:
            # Side by side cannot break across a page cleanly; stacked, each block wraps and
            # flows onto the next page on its own.
            for title, lines in (left, right):
                self.set_x(self.l_margin)
                self.heading(title, self.epw)
                self.block_lines(lines, self.epw)
                self.ln(_GAP)
            return
        top = self.y
        self.set_xy(self.l_margin, top)
        self.heading(left[0], half)
        self.block_lines(left[1], half)
        self.set_xy(self.l_margin + half + gutter, top)
        self.heading(right[0], half)
        self.block_lines(right[1], half)
        self.set_xy(self.l_margin, top + tallest + _GAP)


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
    # fpdf2 cannot split a table row across pages and refuses one taller than a page; a
    # description this long is a bug upstream, and a shortened line beats no document at all.
    text = latin1(text)
    return text if len(text) <= _MAX_CELL_CHARS else text[: _MAX_CELL_CHARS - 3] + "..."


def _line_items(pdf: _DocumentPDF, doc: TaxDocument) -> None:
    pdf.set_font(_FONT, "", 9)
    heading = FontFace(emphasis="BOLD", fill_color=_SHADE)
    # Documents issued before unit prices and per-line tax were recorded keep their old
    # table: a reprint shows what was issued.
    priced = all(i.unit_price_paise is not None and i.tax_paise is not None for i in doc.lines)
    titles = ["#", "Description", "SAC", "Quantity"]
    widths: list[float] = [7, 85, 18, 35]
    aligns = ["CENTER", "LEFT", "CENTER", "RIGHT"]
    if priced:
        titles += ["Unit Price (Rs.)", "Taxable Value (Rs.)", "Tax (Rs.)"]
        widths = [6, 62, 14, 19, 23, 24, 22]
        aligns += ["RIGHT", "RIGHT", "RIGHT"]
    else:
        titles.append("Taxable Value (Rs.)")
        widths.append(35)
        aligns.append("RIGHT")
    with pdf.table(
        col_widths=tuple(widths),
        text_align=tuple(aligns),
        headings_style=heading,
        line_height=_LINE,
        padding=(1.2, 1.5),
        width=pdf.epw,
    ) as table:
        row = table.row()
        for title in titles:
            row.cell(title)
        for index, item in enumerate(doc.lines, start=1):
            row = table.row()
            row.cell(str(index))
            row.cell(_cell_text(item.description))
            row.cell(_cell_text(item.sac))
            quantity = indian_grouping(item.quantity) if item.quantity >= 0 else str(item.quantity)
            row.cell(_cell_text(f"{quantity} {item.unit}"))
            if priced:
                row.cell(rupees(item.unit_price_paise or 0))
            row.cell(rupees(item.taxable_paise))
            if priced:
                row.cell(rupees(item.tax_paise or 0))


def _totals(pdf: _DocumentPDF, doc: TaxDocument) -> None:
    rows = [("Taxable Value", doc.taxable_paise), *_tax_rows(doc)]
    total_label = "Total Credit" if doc.kind is DocumentKind.credit_note else "Total"
    # Keep the figures and the amount in words on one page: a total split from its taxes is
    # the first thing an auditor queries.
    needed = (len(rows) + 1) * (_LINE + 2.4) + _GAP + 3 * _LINE
    if pdf.y + needed > pdf.page_break_trigger:
        pdf.add_page()
    pdf.set_font(_FONT, "", 9)
    with pdf.table(
        col_widths=(55, 35),
        width=90,
        align="RIGHT",
        text_align=("LEFT", "RIGHT"),
        first_row_as_headings=False,
        line_height=_LINE,
        padding=(1.2, 1.5),
    ) as table:
        for label, paise in rows:
            row = table.row()
            row.cell(label)
            row.cell(rupees(paise))
        total = FontFace(emphasis="BOLD", fill_color=_SHADE)
        row = table.row(style=total)
        row.cell(f"{total_label} (Rs.)")
        row.cell(rupees(doc.total_paise))


def _draw(doc: TaxDocument, total_pages: int | None) -> _DocumentPDF:
    title = "Credit Note" if doc.kind is DocumentKind.credit_note else "Tax Invoice"
    pdf = _DocumentPDF(latin1(f"{title} {doc.number} (continued)"), total_pages)
    pdf.set_title(latin1(f"{title} {doc.number}"))
    pdf.set_author(latin1(doc.seller.name))
    pdf.set_creator("CommDesk Billing")
    pdf.set_lang("en-IN")
    # Same document, same bytes: the creation date (and the file ID hashed from it) come from
    # the document rather than the clock.
    pdf.set_creation_date(_as_ist(doc.issued_at))
    pdf.add_page()

    pdf.set_font(_FONT, "B", 16)
    pdf.cell(0, 9, title, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_FONT, "", 8)
    pdf.set_text_color(*_MUTED)
    pdf.cell(0, 4, "Original for Recipient", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*_INK)
    pdf.ln(_GAP)

    pdf.columns(("Supplier", _supplier_lines(doc)), ("Document", _document_lines(doc)))
    pdf.columns(("Recipient", _recipient_lines(doc)), ("Payment", _payment_lines(doc)))

    _line_items(pdf, doc)
    pdf.ln(_GAP)
    _totals(pdf, doc)
    pdf.ln(_GAP)

    pdf.set_x(pdf.l_margin)
    pdf.set_font(_FONT, "B", 9)
    pdf.cell(0, _LINE, "Amount in Words", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_FONT, "", 9)
    pdf.multi_cell(0, _LINE, amount_in_words(doc.total_paise), align="L", new_x=XPos.LMARGIN)
    return pdf


def render_pdf(doc: TaxDocument) -> bytes:
    """The PDF of `doc`; the same document always gives the same bytes."""
    # The first pass only counts pages for "Page 1 of N"; the footer's width does not depend on
    # N, so the second pass lays out exactly the same pages.
    pages = _draw(doc, None).pages_count
    return bytes(_draw(doc, pages).output())
