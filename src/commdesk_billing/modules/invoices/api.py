"""Invoice routes: tax invoices and credit notes, and their PDFs (the buyer, finance_admin,
auditor)."""

from __future__ import annotations

import uuid
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine
from commdesk_billing.errors import (
    DocumentPending,
    StorageUnavailableError,
)
from commdesk_billing.modules.invoices import auth, service
from commdesk_billing.modules.invoices import repository as repo
from commdesk_billing.modules.invoices.document import DocumentKind
from commdesk_billing.modules.invoices.schemas import InvoiceOut, InvoicePage
from commdesk_billing.modules.users import service as users
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import errors
from commdesk_billing.storage import DocumentStore, StorageError, StoredObject

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["invoices"])

_NOT_YOURS = "No such invoice, or another buyer's (`not_found`)"


@router.get(
    "/invoices",
    response_model=InvoicePage,
    responses=errors(
        {
            403: "Support and services read no invoices (`forbidden`)",
            422: "`kind`, `payment_id` or `limit` not valid (`validation_error`), or a "
            "`cursor` this API did not give out (`invalid_cursor`)",
        }
    ),
    summary="Tax invoices and credit notes, newest first: the caller's own, or all of them "
    "for finance_admin and auditor",
)
async def list_invoices(
    engine: Engine,
    caller: Caller,
    payment_id: uuid.UUID | None = None,
    kind: DocumentKind | None = None,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InvoicePage:
    """A buyer's own tax invoices (one per credited purchase) and credit notes (one per
    refund), newest first; finance_admin and auditor see everyone's. Filter by `payment_id`
    to find a purchase's documents, by `kind` for one kind; pages of `limit`, continued
    with `next_cursor`. A buyer with no purchases gets an empty page."""
    auth.may_list(caller)
    before = decode_cursor("i", cursor) if cursor else None

    async def work(conn: AsyncConnection) -> InvoicePage:
        user_id = None
        if not auth.reads_everyone(caller):
            user_id = await users.user_id_for(conn, caller.sub)
            if user_id is None:
                return InvoicePage(data=[], next_cursor=None)
        rows = await repo.listing(
            conn,
            user_id=user_id,
            payment_id=payment_id,
            kind=kind,
            limit=limit + 1,
            before=before,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return InvoicePage(
            data=[InvoiceOut.of(i) for i in rows],
            next_cursor=encode_cursor("i", rows[-1].issued_at, rows[-1].id) if more else None,
        )

    return await in_transaction(engine, work)


@router.get(
    "/invoices/{invoice_id}",
    response_model=InvoiceOut,
    responses=errors({403: "Support and services read no invoices (`forbidden`)", 404: _NOT_YOURS}),
    summary="One tax invoice or credit note, as issued",
)
async def get_invoice(invoice_id: uuid.UUID, engine: Engine, caller: Caller) -> InvoiceOut:
    """The document's number, place of supply, taxable value and GST split (CGST+SGST
    within the state, IGST across states), total in words, and whether its PDF is ready
    (`pdf_available`, fetched at `pdf_url`)."""

    async def work(conn: AsyncConnection) -> InvoiceOut:
        return InvoiceOut.of(await service.get_invoice(conn, caller, invoice_id))

    return await in_transaction(engine, work)


@router.get(
    "/invoices/{invoice_id}/pdf",
    responses={
        **errors(
            {
                403: "Support and services read no invoices (`forbidden`)",
                404: _NOT_YOURS,
                409: "The PDF is still being drawn (`document_pending`, `retry_after_s`)",
                503: "Document storage did not answer, or gave back other bytes than "
                "were stored (`storage_unavailable`)",
            }
        ),
        200: {
            "description": "The PDF, as an attachment named after the document's number",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
    response_class=Response,
    summary="The document as a PDF",
)
async def get_invoice_pdf(
    invoice_id: uuid.UUID, request: Request, engine: Engine, caller: Caller
) -> Response:
    """The signed-off PDF of the invoice or credit note, checked against the checksum
    recorded when it was stored; a browser may keep it privately for an hour. Drawn by a
    worker shortly after the document is issued: until then 409 `document_pending`, and
    the same request a few seconds later succeeds."""

    async def work(conn: AsyncConnection) -> tuple[str | None, str | None, str]:
        invoice = await service.get_invoice(conn, caller, invoice_id)
        return invoice.pdf_key, invoice.pdf_sha256, invoice.number

    key, sha, number = await in_transaction(engine, work)
    if key is None:
        raise DocumentPending(f"the PDF of {number} is being drawn; retry shortly", retry_after_s=5)
    store: DocumentStore = request.app.state.documents
    try:
        data = await store.get(key)
    except StorageError as exc:
        log.warning("invoice.pdf.storage_error", invoice_id=str(invoice_id), error=str(exc))
        raise StorageUnavailableError("document storage did not answer; retry later") from exc
    if StoredObject.of(key, data).sha256 != sha:
        # Storage handed back other bytes than were stored: never serve them as ours.
        log.error("invoice.pdf.corrupt", invoice_id=str(invoice_id), key=key)
        raise StorageUnavailableError("the stored PDF does not match its record")
    filename = number.replace("/", "-") + ".pdf"
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, max-age=3600",
        },
    )
