"""Response bodies of the invoices API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from commdesk_billing.modules.invoices.document import DocumentKind
from commdesk_billing.modules.invoices.model import Invoice
from commdesk_billing.modules.invoices.words import amount_in_words


class InvoiceOut(BaseModel):
    id: uuid.UUID
    kind: DocumentKind = Field(description="tax_invoice or credit_note")
    number: str
    fiscal_year: str
    payment_id: uuid.UUID
    refund_id: uuid.UUID | None
    original_invoice_id: uuid.UUID | None
    issued_at: datetime
    place_of_supply: str
    taxable_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    total_paise: int
    amount_in_words: str
    pdf_available: bool
    pdf_url: str
    pdf_key: str | None = Field(description="Where the PDF is kept in document storage")
    document: dict[str, Any] = Field(description="The document as issued")

    @classmethod
    def of(cls, i: Invoice) -> InvoiceOut:
        return cls(
            id=i.id,
            kind=i.kind.value,
            number=i.number,
            fiscal_year=i.fiscal_year,
            payment_id=i.payment_id,
            refund_id=i.refund_id,
            original_invoice_id=i.original_invoice_id,
            issued_at=i.issued_at,
            place_of_supply=i.place_of_supply,
            taxable_paise=i.taxable_paise,
            cgst_paise=i.cgst_paise,
            sgst_paise=i.sgst_paise,
            igst_paise=i.igst_paise,
            total_paise=i.total_paise,
            amount_in_words=amount_in_words(i.total_paise),
            pdf_available=i.pdf_key is not None,
            pdf_url=f"/v1/invoices/{i.id}/pdf",
            pdf_key=i.pdf_key,
            document=i.document,
        )


class InvoicePage(BaseModel):
    data: list[InvoiceOut]
    next_cursor: str | None
