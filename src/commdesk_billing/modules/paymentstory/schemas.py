"""Response bodies of a payment read: the payment with its expansions, and its timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from commdesk_billing.modules.invoices.schemas import InvoiceOut
from commdesk_billing.modules.payments.schemas import PaymentOut
from commdesk_billing.modules.payments.state import Status
from commdesk_billing.modules.paymentstory.timeline import Entry, EntryType
from commdesk_billing.modules.refunds.schemas import RefundOut


class PaymentView(PaymentOut):
    """A payment; `invoice` and `refunds` are present only when asked for with `expand`."""

    invoice: InvoiceOut | None = Field(
        None, description="With expand=invoice: its tax invoice, or null while none is issued"
    )
    refunds: list[RefundOut] | None = Field(
        None, description="With expand=refunds: its refunds, newest first"
    )


class TimelineEntry(BaseModel):
    type: EntryType = Field(description="What happened (a fixed vocabulary; see docs/api.md)")
    at: datetime
    summary: str = Field(description="One line for a person; not for parsing")
    ref: str | None = Field(description="The id of what the entry is about (see its type)")
    data: dict[str, Any] = Field(description="The entry's figures; keys depend on `type`")

    @classmethod
    def of(cls, e: Entry) -> TimelineEntry:
        return cls(type=e.type, at=e.at, summary=e.summary, ref=e.ref, data=e.data)


class Timeline(BaseModel):
    payment_id: uuid.UUID
    order_id: str
    status: Status = Field(description="The payment's status now")
    entries: list[TimelineEntry] = Field(description="Oldest first")
