"""A settlement's statement as a PDF (fpdf2, core fonts, like `invoices/pdf.py`): the payee,
the period, each line from payable to net, the reserve, the deductions, the fee, the
transfers and the UTR. Pure: the same settlement and transfers give the same bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from fpdf import FPDF

from commdesk_billing.modules.invoices.pdf import latin1
from commdesk_billing.modules.settlements.model import Attempt, Settlement
from commdesk_billing.money import rate_text

IST = timezone(timedelta(hours=5, minutes=30))


def _rupees(paise: int) -> str:
    sign = "-" if paise < 0 else ""
    whole, part = divmod(abs(paise), 100)
    return f"{sign}Rs. {whole:,}.{part:02d}"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(IST).strftime("%d %b %Y %H:%M IST")


def key_of(s: Settlement) -> str:
    """Where the statement of a settlement in its status is stored: a new status is a new
    statement (a paid one names its UTR, a reversed one says so)."""
    return f"settlements/{s.id}/{s.status.value}.pdf"


def render(s: Settlement, attempts: list[Attempt], *, seller: str) -> bytes:
    pdf = FPDF(format="A4")
    # Fixed, so the bytes depend on the settlement only.
    pdf.set_creation_date(s.created_at.astimezone(UTC))
    pdf.set_title(latin1(f"Settlement statement {s.id}"))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 8, latin1("Settlement statement"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for line in (
        seller,
        f"Settlement {s.id}",
        f"Payee {s.payee_id} ({s.payable_code.rsplit(':', 1)[0]})",
        f"Period {s.period}, entries up to {_when(s.cut_off)}",
        f"Paid to {s.account_mask} by {s.transfer_mode}",
        f"Status {s.status.value}" + (f" ({s.failure_code})" if s.failure_code else ""),
        f"Created {_when(s.created_at)}; paid {_when(s.paid_at)}; ended {_when(s.ended_at)}",
    ):
        pdf.cell(0, 5, latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    lines = (
        ("Payable up to the cut-off", s.payable_paise, False),
        ("Less reserves of earlier settlements still held", -s.reserves_held_paise, False),
        (
            f"Less rolling reserve {rate_text(s.reserve_bps)}, held until {_when(s.reserve_until)}",
            -s.reserve_paise,
            False,
        ),
        ("Gross settled", s.gross_paise, True),
        (f"Less TDS, section 194-O, {rate_text(s.tds_bps)}", -s.tds_paise, False),
        (f"Less GST TCS, section 52, {rate_text(s.tcs_bps)}", -s.tcs_paise, False),
        ("Less payout fee", -s.fee_paise, False),
        ("Net paid", s.net_paise, True),
    )
    for label, paise, bold in lines:
        pdf.set_font("Helvetica", "B" if bold else "", 10)
        pdf.cell(140, 6, latin1(label), border="B")
        pdf.cell(0, 6, latin1(_rupees(paise)), border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 6, latin1(f"UTR: {s.utr or 'not paid'}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 8)
    for a in attempts:
        pdf.cell(
            0,
            5,
            latin1(
                f"Transfer {a.attempt}: {a.transfer_id}, {_rupees(a.amount_paise)}, "
                f"{a.status.value} {a.cf_status or ''} {a.status_code or ''} {a.utr or ''}"
            ),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    return bytes(pdf.output())
