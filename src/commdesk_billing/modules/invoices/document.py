"""What a tax document says, independent of how it is stored or drawn.

A `TaxDocument` is built once, when the invoice or credit note is issued, from the payment
or refund it documents; the row in `invoices` keeps it (as JSON) and the PDF is drawn from
it. Figures are integer paise and already satisfy taxable + tax = total and
cgst + sgst + igst = tax (see `modules/tax/gst.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class DocumentKind(StrEnum):
    tax_invoice = "tax_invoice"
    credit_note = "credit_note"


@dataclass(frozen=True)
class Party:
    name: str
    address: str | None
    gstin: str | None
    state_code: str | None  # two-digit GST state code
    email: str | None = None


@dataclass(frozen=True)
class LineItem:
    description: str
    sac: str
    quantity: int
    unit: str  # "pack", "top-up", "service", "refund" ("credits" on documents issued earlier)
    taxable_paise: int
    # Per unit before tax, and this line's tax. None on documents issued before they were
    # printed (those documents never change).
    unit_price_paise: int | None = None
    tax_paise: int | None = None


@dataclass(frozen=True)
class TaxDocument:
    kind: DocumentKind
    number: str
    issued_at: datetime
    seller: Party
    buyer: Party
    place_of_supply: str  # two-digit GST state code
    lines: tuple[LineItem, ...]
    taxable_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    total_paise: int
    rate_bp: int  # 1800 = 18 %
    gst_mode: str  # "inclusive" or "exclusive": how the price was quoted
    payment_reference: str  # our order id and Cashfree's payment / refund id
    # How it was paid ("UPI", "Card", "Netbanking", "Wallet (PhonePe)"…) and where the
    # payment stands ("Paid", "Refunded"). None on documents issued before they were printed.
    payment_mode: str | None = None
    payment_status: str | None = None
    # Credit notes only: the invoice being credited, and why.
    original_number: str | None = None
    original_issued_at: datetime | None = None
    reason: str | None = None

    @property
    def tax_paise(self) -> int:
        return self.cgst_paise + self.sgst_paise + self.igst_paise

    def __post_init__(self) -> None:
        if sum(line.taxable_paise for line in self.lines) != self.taxable_paise:
            raise ValueError("line items do not add up to the taxable value")
        taxes = [line.tax_paise for line in self.lines]
        if None not in taxes and sum(t or 0 for t in taxes) != self.tax_paise:
            raise ValueError("the lines' tax does not add up to the document's")
        if self.taxable_paise + self.tax_paise != self.total_paise:
            raise ValueError("taxable value + tax is not the total")
        if (self.cgst_paise or self.sgst_paise) and self.igst_paise:
            raise ValueError("a document charges CGST+SGST or IGST, never both")
        if (self.kind is DocumentKind.credit_note) != (self.original_number is not None):
            raise ValueError("a credit note (and only a credit note) names its invoice")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "number": self.number,
            "issued_at": self.issued_at.isoformat(),
            "seller": vars(self.seller),
            "buyer": vars(self.buyer),
            "place_of_supply": self.place_of_supply,
            "lines": [vars(line) for line in self.lines],
            "taxable_paise": self.taxable_paise,
            "cgst_paise": self.cgst_paise,
            "sgst_paise": self.sgst_paise,
            "igst_paise": self.igst_paise,
            "total_paise": self.total_paise,
            "rate_bp": self.rate_bp,
            "gst_mode": self.gst_mode,
            "payment_reference": self.payment_reference,
            "payment_mode": self.payment_mode,
            "payment_status": self.payment_status,
            "original_number": self.original_number,
            "original_issued_at": (
                self.original_issued_at.isoformat() if self.original_issued_at else None
            ),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaxDocument:
        original_at = data.get("original_issued_at")
        return cls(
            kind=DocumentKind(data["kind"]),
            number=data["number"],
            issued_at=datetime.fromisoformat(data["issued_at"]),
            seller=Party(**data["seller"]),
            buyer=Party(**data["buyer"]),
            place_of_supply=data["place_of_supply"],
            lines=tuple(LineItem(**line) for line in data["lines"]),
            taxable_paise=data["taxable_paise"],
            cgst_paise=data["cgst_paise"],
            sgst_paise=data["sgst_paise"],
            igst_paise=data["igst_paise"],
            total_paise=data["total_paise"],
            rate_bp=data["rate_bp"],
            gst_mode=data["gst_mode"],
            payment_reference=data["payment_reference"],
            payment_mode=data.get("payment_mode"),
            payment_status=data.get("payment_status"),
            original_number=data.get("original_number"),
            original_issued_at=datetime.fromisoformat(original_at) if original_at else None,
            reason=data.get("reason"),
        )
