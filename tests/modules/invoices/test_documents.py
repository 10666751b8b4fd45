"""Amounts in words and figures, GST state names, and the PDF of invoices and credit notes."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader

from commdesk_billing.modules.invoices.document import DocumentKind, LineItem, Party, TaxDocument
from commdesk_billing.modules.invoices.pdf import FOOTER_TEXT, latin1, render_pdf
from commdesk_billing.modules.invoices.states import GST_STATES, state_name
from commdesk_billing.modules.invoices.words import amount_in_words, indian_grouping, rupees
from commdesk_billing.modules.tax import gst

# --- amount_in_words ----------------------------------------------------------------------

RUPEE = 100  # paise
LAKH = 100_000 * RUPEE
CRORE = 10_000_000 * RUPEE


@pytest.mark.parametrize(
    ("paise", "words"),
    [
        (0, "Rupees Zero Only"),
        (1, "Rupees Zero and One Paisa Only"),
        (99, "Rupees Zero and Ninety-Nine Paise Only"),
        (1 * RUPEE, "Rupees One Only"),
        (1 * RUPEE + 50, "Rupees One and Fifty Paise Only"),
        (10 * RUPEE, "Rupees Ten Only"),
        (11 * RUPEE, "Rupees Eleven Only"),
        (19 * RUPEE, "Rupees Nineteen Only"),
        (20 * RUPEE, "Rupees Twenty Only"),
        (21 * RUPEE, "Rupees Twenty-One Only"),
        (99 * RUPEE, "Rupees Ninety-Nine Only"),
        (100 * RUPEE, "Rupees One Hundred Only"),
        (101 * RUPEE, "Rupees One Hundred One Only"),
        (999 * RUPEE, "Rupees Nine Hundred Ninety-Nine Only"),
        (1000 * RUPEE, "Rupees One Thousand Only"),
        (1001 * RUPEE, "Rupees One Thousand One Only"),
        (99_999 * RUPEE, "Rupees Ninety-Nine Thousand Nine Hundred Ninety-Nine Only"),
        (1 * LAKH, "Rupees One Lakh Only"),
        (1 * LAKH + 1 * RUPEE, "Rupees One Lakh One Only"),
        (
            999_999 * RUPEE,
            "Rupees Nine Lakh Ninety-Nine Thousand Nine Hundred Ninety-Nine Only",
        ),
        (10 * LAKH, "Rupees Ten Lakh Only"),
        (
            9_999_999 * RUPEE,
            "Rupees Ninety-Nine Lakh Ninety-Nine Thousand Nine Hundred Ninety-Nine Only",
        ),
        (1 * CRORE, "Rupees One Crore Only"),
        (1 * CRORE + 1 * RUPEE, "Rupees One Crore One Only"),
        (
            12_345_678 * RUPEE,
            "Rupees One Crore Twenty-Three Lakh Forty-Five Thousand Six Hundred Seventy-Eight Only",
        ),
        (
            123_456_789 * RUPEE + 5,
            "Rupees Twelve Crore Thirty-Four Lakh Fifty-Six Thousand Seven Hundred Eighty-Nine"
            " and Five Paise Only",
        ),
        (100 * CRORE, "Rupees One Hundred Crore Only"),
        (1000 * CRORE, "Rupees One Thousand Crore Only"),
        (100_000 * CRORE, "Rupees One Lakh Crore Only"),
        (
            123_45_67_890 * RUPEE + 12,
            "Rupees One Hundred Twenty-Three Crore Forty-Five Lakh Sixty-Seven Thousand"
            " Eight Hundred Ninety and Twelve Paise Only",
        ),
    ],
)
def test_amount_in_words_exact(paise: int, words: str) -> None:
    assert amount_in_words(paise) == words


@pytest.mark.parametrize("bad", [-1, -100, True, False, 1.0, 100.5, "100", None])
def test_amount_in_words_refuses_negatives_and_non_ints(bad: object) -> None:
    with pytest.raises(ValueError):
        amount_in_words(bad)  # type: ignore[arg-type]


_SMALL = {
    "Zero": 0, "One": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5, "Six": 6, "Seven": 7,
    "Eight": 8, "Nine": 9, "Ten": 10, "Eleven": 11, "Twelve": 12, "Thirteen": 13,
    "Fourteen": 14, "Fifteen": 15, "Sixteen": 16, "Seventeen": 17, "Eighteen": 18,
    "Nineteen": 19,
}  # fmt: skip
_TENS = {
    "Twenty": 20, "Thirty": 30, "Forty": 40, "Fifty": 50, "Sixty": 60, "Seventy": 70,
    "Eighty": 80, "Ninety": 90,
}  # fmt: skip
_SCALES = {"Lakh": 100_000, "Thousand": 1_000}


def _below_hundred(word: str) -> int:
    if "-" in word:
        tens, units = word.split("-")
        assert _SMALL[units] in range(1, 10), word
        return _TENS[tens] + _SMALL[units]
    return _SMALL[word] if word in _SMALL else _TENS[word]


def _number(words: list[str]) -> int:
    # Independent of words.py: split on the last "Crore", so "One Thousand Crore" reads as
    # (One Thousand) x crore, then add up lakh / thousand groups and the hundreds below them.
    if "Crore" in words:
        at = len(words) - 1 - words[::-1].index("Crore")
        assert at > 0, words
        return _number(words[:at]) * 10_000_000 + _number(words[at + 1 :])
    total = current = 0
    for word in words:
        if word in _SCALES:
            assert 0 < current < 100, words
            total += current * _SCALES[word]
            current = 0
        elif word == "Hundred":
            assert 0 < current < 10, words
            current *= 100
        else:
            current += _below_hundred(word)
    return total + current


def _parse_amount(text: str) -> int:
    words = text.split(" ")
    assert words[0] == "Rupees" and words[-1] == "Only", text
    words = words[1:-1]
    paise = 0
    if "and" in words:
        at = words.index("and")
        paise_words = words[at + 1 :]
        assert len(paise_words) == 2, text
        paise = _below_hundred(paise_words[0])
        assert paise_words[1] == ("Paisa" if paise == 1 else "Paise"), text
        assert 0 < paise < 100, text
        words = words[:at]
    if words == ["Zero"]:
        return paise
    assert "Zero" not in words, text
    return _number(words) * 100 + paise


@given(st.integers(min_value=0, max_value=10**13))
def test_amount_in_words_round_trips(paise: int) -> None:
    text = amount_in_words(paise)
    assert text.endswith(" Only")
    assert "  " not in text
    assert _parse_amount(text) == paise


def test_parser_catches_a_wrong_spelling() -> None:
    # The property above is only worth something if the parser disagrees with wrong words.
    assert _parse_amount("Rupees One Lakh Only") == 1 * LAKH
    assert _parse_amount("Rupees One Thousand Only") != 1 * LAKH


# --- rupees -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paise", "text"),
    [
        (0, "0.00"),
        (5, "0.05"),
        (100, "1.00"),
        (99_999, "999.99"),
        (100_000, "1,000.00"),
        (1_234_567, "12,345.67"),
        (12_345_678, "1,23,456.78"),
        (123_456_789, "12,34,567.89"),
        (10**9, "1,00,00,000.00"),
        (123_456_789_012, "1,23,45,67,890.12"),
        (-5, "-0.05"),
        (-12_345_678, "-1,23,456.78"),
    ],
)
def test_rupees_groups_the_indian_way(paise: int, text: str) -> None:
    assert rupees(paise) == text


@pytest.mark.parametrize("bad", [True, 1.5, "100", None])
def test_rupees_refuses_non_ints(bad: object) -> None:
    with pytest.raises(ValueError):
        rupees(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_rupees_reads_back(paise: int) -> None:
    text = rupees(paise)
    whole, fraction = text.lstrip("-").split(".")
    groups = whole.split(",")
    assert len(groups[-1]) == 3 or len(groups) == 1
    assert all(len(group) == 2 for group in groups[1:-1])
    assert 1 <= len(groups[0]) <= (3 if len(groups) == 1 else 2)
    assert int(whole.replace(",", "")) * 100 + int(fraction) == abs(paise)
    assert text.startswith("-") == (paise < 0)


def test_indian_grouping() -> None:
    assert indian_grouping(0) == "0"
    assert indian_grouping(1000) == "1,000"
    assert indian_grouping(1_00_000) == "1,00,000"
    with pytest.raises(ValueError):
        indian_grouping(-1)


# --- states -------------------------------------------------------------------------------


def test_state_names() -> None:
    assert state_name("01") == "Jammu and Kashmir"
    assert state_name("29") == "Karnataka"
    assert state_name("27") == "Maharashtra"
    assert state_name("37") == "Andhra Pradesh"
    assert state_name("38") == "Ladakh"
    assert state_name("97") == "Other Territory"
    assert state_name("99") == "Centre Jurisdiction"
    assert state_name(None) is None
    assert state_name("00") is None
    assert state_name("7") is None
    assert state_name("39") is None
    assert set(GST_STATES) == {f"{n:02d}" for n in range(1, 39)} | {"97", "99"}


# --- PDF ----------------------------------------------------------------------------------

ISSUED = datetime(2026, 11, 26, 20, 15, tzinfo=UTC)  # 27 Nov 2026 01:45 in India
SELLER = Party(
    name="CommDesk Technologies Private Limited",
    address="2nd Floor, 100 Residency Road, Bengaluru, Karnataka 560025",
    gstin="29AAACC0000A1Z5",
    state_code="29",
)


def _document(
    *,
    kind: DocumentKind = DocumentKind.tax_invoice,
    buyer: Party | None = None,
    price_paise: int = 100_000,
    mode: gst.GstMode = "inclusive",
    description: str = "CommDesk credits",
    **extra: object,
) -> TaxDocument:
    buyer = buyer or Party(
        name="Asha Rao", address=None, gstin=None, state_code="29", email="asha@example.com"
    )
    place = buyer.state_code or "29"
    tax = gst.compute(price_paise, rate_bp=1800, mode=mode, buyer_state=place, seller_state="29")
    return TaxDocument(
        kind=kind,
        number="CD/2026-27/000123",
        issued_at=ISSUED,
        seller=SELLER,
        buyer=buyer,
        place_of_supply=place,
        lines=(LineItem(description, "998439", 1000, "credits", tax.taxable_paise),),
        taxable_paise=tax.taxable_paise,
        cgst_paise=tax.cgst_paise,
        sgst_paise=tax.sgst_paise,
        igst_paise=tax.igst_paise,
        total_paise=tax.amount_paise,
        rate_bp=1800,
        gst_mode=mode,
        payment_reference="order 7f3a / cf_payment 5512",
        **extra,  # type: ignore[arg-type]
    )


def _pages(pdf: bytes) -> list[str]:
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    return [page.extract_text() for page in reader.pages]


def _flat(pdf: bytes) -> str:
    return " ".join(" ".join(_pages(pdf)).split())


def test_intra_state_invoice_shows_cgst_and_sgst() -> None:
    doc = _document()
    # 1,000.00 inclusive of 18 %: taxable 847.46, tax 152.54 split evenly.
    assert (doc.taxable_paise, doc.cgst_paise, doc.sgst_paise) == (84_746, 7_627, 7_627)
    text = _flat(render_pdf(doc))

    assert "Tax Invoice" in text
    assert "Credit Note" not in text
    assert "Invoice No.: CD/2026-27/000123" in text
    assert "Invoice Date: 27 Nov 2026" in text  # the Indian date, not the UTC one
    assert "CommDesk Technologies Private Limited" in text
    assert "GSTIN: 29AAACC0000A1Z5" in text
    assert "State: Karnataka (Code 29)" in text
    assert "Place of Supply: Karnataka (Code 29)" in text
    assert "Tax Payable on Reverse Charge: No" in text
    assert "Asha Rao" in text
    assert "Email: asha@example.com" in text
    assert "GSTIN: Unregistered" in text
    assert "CommDesk credits 998439 1,000 credits 847.46" in text
    assert "Taxable Value 847.46" in text
    assert "CGST @ 9% 76.27" in text
    assert "SGST @ 9% 76.27" in text
    assert "IGST" not in text
    assert "Total (Rs.) 1,000.00" in text
    assert "Rupees One Thousand Only" in text
    assert "Payment Reference: order 7f3a / cf_payment 5512" in text
    assert "Prices were quoted inclusive of GST" in text
    assert FOOTER_TEXT in text
    assert "Page 1 of 1" in text


def test_inter_state_credit_note_shows_igst_and_the_invoice_it_credits() -> None:
    buyer = Party(
        name="Vikram Shah",
        address="14 Marine Drive, Mumbai 400020",
        gstin="27AAPFU0939F1ZV",
        state_code="27",
        email="accounts@shah.example",
    )
    doc = _document(
        kind=DocumentKind.credit_note,
        buyer=buyer,
        price_paise=49_900,
        mode="exclusive",
        original_number="CD/2026-27/000098",
        original_issued_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        reason="Refund of unused credits",
    )
    assert (doc.igst_paise, doc.total_paise) == (8_982, 58_882)
    text = _flat(render_pdf(doc))

    assert "Credit Note" in text
    assert "Tax Invoice" not in text
    assert "Credit Note No.: CD/2026-27/000123" in text
    assert "Credit Note Date: 27 Nov 2026" in text
    assert "Original Invoice No.: CD/2026-27/000098" in text
    assert "Original Invoice Date: 02 Nov 2026" in text
    assert "Reason: Refund of unused credits" in text
    assert "GSTIN: 29AAACC0000A1Z5" in text
    assert "GSTIN: 27AAPFU0939F1ZV" in text
    assert "State: Maharashtra (Code 27)" in text
    assert "Place of Supply: Maharashtra (Code 27)" in text
    assert "IGST @ 18% 89.82" in text
    assert "CGST" not in text
    assert "SGST" not in text
    assert "Total Credit (Rs.) 588.82" in text
    assert "Rupees Five Hundred Eighty-Eight and Eighty-Two Paise Only" in text
    assert "Prices were quoted exclusive of GST" in text


def test_same_document_same_bytes_and_dated_by_the_document() -> None:
    doc = _document()
    first = render_pdf(doc)
    assert render_pdf(doc) == first
    info = PdfReader(io.BytesIO(first)).metadata
    assert info is not None and info.creation_date == ISSUED


def test_odd_rate_split_is_printed_exactly() -> None:
    doc = TaxDocument(
        kind=DocumentKind.tax_invoice,
        number="X-1",
        issued_at=ISSUED,
        seller=SELLER,
        buyer=Party("B", None, None, "29"),
        place_of_supply="29",
        lines=(LineItem("Credits", "998439", 10, "credits", 10_000),),
        taxable_paise=10_000,
        cgst_paise=625,
        sgst_paise=625,
        igst_paise=0,
        total_paise=11_250,
        rate_bp=1250,
        gst_mode="exclusive",
        payment_reference="r",
    )
    text = _flat(render_pdf(doc))
    assert "CGST @ 6.25% 6.25" in text
    assert "SGST @ 6.25% 6.25" in text


def test_names_outside_latin1_render() -> None:
    buyer = Party(
        name="राम कुमार Rao 👍🏽 “Ramu”",
        address="१२ गली, Łódź \u2014 5th \u201cCross\u201d\r\nPune\x00",
        gstin=None,
        state_code="27",
        email="ram@उदाहरण.भारत",
    )
    doc = _document(buyer=buyer, description="Credits ₹999 pack…")
    text = _flat(render_pdf(doc))
    assert 'Rao ?? "Ramu"' in text
    assert '- 5th "Cross"' in text
    assert "Credits Rs.999 pack..." in text
    assert "IGST @ 18%" in text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Plain ASCII, and Café", "Plain ASCII, and Café"),
        ("Dvořák", "Dvorák"),
        ("\u201cHi\u201d \u2013 \u20b95\u2026", '"Hi" - Rs.5...'),
        ("राम", "???"),
        ("a\tb\x00c\r\nd", "a b c\nd"),
        ("ﬁle", "file"),
    ],
)
def test_latin1(raw: str, clean: str) -> None:
    assert latin1(raw) == clean


@given(st.text())
def test_latin1_always_encodes(raw: str) -> None:
    latin1(raw).encode("latin-1")


def test_long_address_wraps_onto_more_lines_and_pages() -> None:
    street = "Flat 12B, Sunshine Residency, Near The Old Temple And The Big Banyan Tree, "
    unbroken = "Z" * 400
    address = street * 40 + unbroken + " Bengaluru 560001"
    buyer = Party(name="N " * 150, address=address, gstin=None, state_code="29")
    pdf = render_pdf(_document(buyer=buyer))
    pages = _pages(pdf)

    assert len(pages) >= 2
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in page
    # Wrapped, not run off the page: no extracted line is wider than a line of the page holds.
    lines = [line for page in pages for line in page.splitlines()]
    assert max(len(line) for line in lines) < 130
    # And nothing was cut: the whole address is there, line breaks aside.
    squeezed = "".join("".join(pages).split())
    assert "".join(address.split()) in squeezed
    assert "Total (Rs.) 1,000.00" in _flat(pdf)


def test_page_count_alias_in_a_name_is_printed_as_written() -> None:
    buyer = Party(name="Shop {nb} & Co", address="{nb} Main Road", gstin=None, state_code="29")
    text = _flat(render_pdf(_document(buyer=buyer)))
    assert "Shop {nb} & Co" in text and "{nb} Main Road" in text
    assert "Page 1 of 1" in text


def test_table_headings_never_end_a_page_alone() -> None:
    # An address that leaves room for the table's headings at the foot of page 1 but not for
    # its first row: both go to page 2.
    address = "Flat 12B, Sunshine Residency, " * 40 + "Z" * 400 + " Bengaluru"
    buyer = Party(name="N " * 150, address=address, gstin=None, state_code="29")
    pages = _pages(render_pdf(_document(buyer=buyer)))
    assert len(pages) == 2
    assert "Description" not in pages[0]
    assert "Description" in pages[1] and "CommDesk credits" in pages[1]


def test_absurdly_long_description_is_shortened_not_fatal() -> None:
    text = _flat(render_pdf(_document(description="credits " * 2000)))
    assert "..." in text
    assert 100 < text.count("credits") < 200
    assert "Total (Rs.) 1,000.00" in text
