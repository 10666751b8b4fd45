"""`invoice.generate`: issue the tax invoice of a credited purchase (`payment.credited`) and
the credit note of a successful refund (`refund.succeeded`). `invoice.render`, a queue of its
own: draw and store an issued document's PDF (`invoice.render`)."""

from __future__ import annotations

import uuid

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import NotFound
from commdesk_billing.modules.invoices import service
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError
from commdesk_billing.security.text import StrictInput
from commdesk_billing.storage import DocumentStore


class PaymentCredited(StrictInput, extra="ignore"):
    payment_id: uuid.UUID


class RefundSucceeded(StrictInput, extra="ignore"):
    refund_id: uuid.UUID


class Render(StrictInput):
    invoice_id: uuid.UUID


class InvoiceGeneration:
    """Issuing: database work only, in the wake of each purchase and refund."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        try:
            if envelope.type == "payment.credited":
                p = PaymentCredited.model_validate(envelope.payload)
                await service.issue_invoice(conn, self.settings, p.payment_id)
            elif envelope.type == "refund.succeeded":
                r = RefundSucceeded.model_validate(envelope.payload)
                await service.issue_credit_note(conn, self.settings, r.refund_id)
            else:
                # Routing sends only the two types above here (wiring.ROUTES).
                raise PermanentError(f"invoice.generate has no handler for {envelope.type}")
        except ValidationError as exc:
            raise PermanentError(f"{envelope.type} payload: {exc.errors()[:3]}") from exc
        except NotFound as exc:
            raise PermanentError(str(exc)) from exc


class PdfRendering:
    """Drawing a document's PDF and writing it to document storage, inside the transaction
    that records where it went (a crash in between leaves the stored PDF to be found and
    kept by the next attempt, see `service.store_pdf`)."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        if envelope.type != "invoice.render":
            raise PermanentError(f"invoice.render has no handler for {envelope.type}")
        try:
            d = Render.model_validate(envelope.payload)
            await service.store_pdf(conn, self.store, d.invoice_id)
        except ValidationError as exc:
            raise PermanentError(f"{envelope.type} payload: {exc.errors()[:3]}") from exc
        except NotFound as exc:
            raise PermanentError(str(exc)) from exc

    async def aclose(self) -> None:
        await self.store.aclose()
