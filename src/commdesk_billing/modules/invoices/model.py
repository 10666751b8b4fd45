"""Invoice rows as the service sees them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commdesk_billing.modules.invoices.document import DocumentKind, TaxDocument


@dataclass(frozen=True)
class Invoice:
    id: uuid.UUID
    kind: DocumentKind
    series: str
    fiscal_year: str
    seq: int
    number: str
    payment_id: uuid.UUID
    refund_id: uuid.UUID | None
    original_invoice_id: uuid.UUID | None
    user_id: uuid.UUID
    issued_at: datetime
    place_of_supply: str
    taxable_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    total_paise: int
    document: dict[str, Any]
    pdf_key: str | None
    pdf_sha256: str | None
    pdf_bytes: int | None
    pdf_stored_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Invoice:
        data = dict(row._asdict())
        data["kind"] = DocumentKind(data["kind"])
        if isinstance(data["document"], str):
            data["document"] = json.loads(data["document"])
        return cls(**data)

    @property
    def tax_document(self) -> TaxDocument:
        return TaxDocument.from_json(self.document)

    @property
    def pdf_object_key(self) -> str:
        """Where its PDF is stored: one folder per kind and financial year, named by its
        number and id. The id keeps two databases that share a storage (development, test
        runs, a restored backup) from ever meeting on a key: a key only repeats for the
        same document, whose earlier drawing is then kept."""
        folder = "invoices" if self.kind is DocumentKind.tax_invoice else "credit-notes"
        return f"{folder}/{self.fiscal_year}/{self.number.replace('/', '-')}_{self.id}.pdf"
