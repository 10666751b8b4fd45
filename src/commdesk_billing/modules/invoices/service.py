"""Tax documents (the seed's generateInvoice): one tax invoice per credited purchase, one
credit note per successful refund.

Issuing is one transaction: lock the payment, return the document if it exists already
(a redelivered message issues nothing twice), else take the next number of the series and
insert the document. The document's figures are the payment's or refund's own, computed by
`modules/tax/gst.py` and `modules/refunds/allocation.py`; nothing is recomputed here.

The PDF is a second step (`store_pdf`, announced by the first on a queue of its own,
`invoice.render`): the issued document is the legal record, and neither storage being down nor
a backlog of drawings may hold up numbering. It is drawn from the
stored document and written under a key derived from the number.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import DocumentPending, NotFound
from commdesk_billing.modules.invoices import auth, numbering
from commdesk_billing.modules.invoices import repository as repo
from commdesk_billing.modules.invoices.document import (
    DocumentKind,
    LineItem,
    Party,
    TaxDocument,
)
from commdesk_billing.modules.invoices.model import Invoice
from commdesk_billing.modules.invoices.pdf import render_pdf
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.state import Status as PaymentStatus
from commdesk_billing.modules.refunds import reads as refunds
from commdesk_billing.modules.refunds.model import RefundStatus
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.users.profiles import BuyerDetails
from commdesk_billing.queues import outbox
from commdesk_billing.security.jwt import Principal
from commdesk_billing.storage import DocumentStore, ObjectConflict, StoredObject
from commdesk_billing.telemetry.metrics import DOCUMENTS_ISSUED, PDF_RENDER_CPU

log = structlog.get_logger(__name__)

_RENDERER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdf")


class YearTurned(Exception):
    """Raised (and the transaction rolled back, number and all) when the financial year
    turns between taking a number and dating the document; the consumer retries."""


def seller(settings: Settings) -> Party:
    return Party(
        name=settings.seller_legal_name,
        address=settings.seller_address,
        gstin=settings.seller_gstin,
        state_code=settings.seller_state_code,
    )


def _describe(p: Payment) -> str:
    credits = f"{p.base_credits:,} credits"
    if p.bonus_credits:
        credits += f" + {p.bonus_credits:,} bonus"
    # The pack's name as sold (kept on the payment at order time); its code before that.
    what = str(p.metadata.get("pack_name") or p.pack_code or "custom top-up")
    return f"CommDesk credits, {what} ({credits})"


# How Cashfree's payment method reads on a document.
_MODES = {
    "upi": "UPI",
    "card": "Card",
    "netbanking": "Netbanking",
    "app": "Wallet",
    "emi": "Card EMI",
    "cardless_emi": "Cardless EMI",
    "paylater": "Pay Later",
    "banktransfer": "Bank transfer",
}


def _payment_mode(p: Payment) -> str | None:
    if p.payment_method is None:
        return "UPI AutoPay mandate" if p.on_mandate else None
    mode = _MODES.get(p.payment_method, p.payment_method)
    return f"{mode} (mandate)" if p.on_mandate else mode


def _line(settings: Settings, p: Payment) -> LineItem:
    """The one line of a payment's tax invoice: the pack (or top-up) bought, its credits
    named, or the platform's fee on a payment of another kind (a sponsorship:
    `metadata.about` names what it paid). One unit: its price is the taxable value."""
    tax = p.cgst_paise + p.sgst_paise + p.igst_paise
    if p.buys_credits:
        return LineItem(
            description=_describe(p),
            sac=settings.invoice_sac_code,
            quantity=1,
            unit="pack" if p.pack_code else "top-up",
            taxable_paise=p.taxable_paise,
            unit_price_paise=p.taxable_paise,
            tax_paise=tax,
        )
    about = str(p.metadata.get("about") or p.kind)
    return LineItem(
        description=f"CommDesk platform fee on {about}"[:300],
        sac=settings.platform_fee_sac_code,
        quantity=1,
        unit="service",
        taxable_paise=p.taxable_paise,
        unit_price_paise=p.taxable_paise,
        tax_paise=tax,
    )


async def _buyer(conn: AsyncConnection, p: Payment) -> Party:
    """The recipient as the order recorded them: a billing profile's legal name, address and
    GSTIN when the buyer had one (B2B when a GSTIN), else the CommDesk user (B2C)."""
    user = await users.get_user(conn, p.user_id)
    email = p.customer_email or user.email
    on_file = BuyerDetails.from_snapshot(p.metadata.get("buyer"))
    if on_file is not None:
        return Party(
            name=on_file.legal_name,
            address=on_file.address,
            gstin=on_file.gstin,
            state_code=p.buyer_state,
            email=email,
        )
    return Party(
        name=user.name or email or f"CommDesk member {user.external_id}",
        address=None,
        gstin=None,
        state_code=p.buyer_state,
        email=email,
    )


async def _issue(
    conn: AsyncConnection,
    settings: Settings,
    *,
    kind: DocumentKind,
    payment: Payment,
    at: datetime,
    draft: TaxDocument,
    fixed_time: datetime | None = None,
    refund_id: uuid.UUID | None = None,
    original: Invoice | None = None,
) -> Invoice:
    series = (
        settings.invoice_series if kind is DocumentKind.tax_invoice else settings.credit_note_series
    )
    invoice_id = uuid.uuid4()
    # Everything that does not need the number comes first: from taking the number to
    # COMMIT, every issuer of the series waits on this transaction, so that stretch is two
    # statements long.
    await outbox.send(
        conn,
        "invoice.render",
        "invoice.render",
        {"invoice_id": str(invoice_id)},
        correlation_id=str(payment.id),
    )
    year = numbering.fiscal_year(at)
    seq = await numbering.next_seq(conn, series, year)
    if fixed_time is None:
        # Dated after the wait for the series' row, so numbers and dates run in the same
        # order; a year that turned while we waited gives the number back and starts again.
        at = max(datetime.now(UTC), draft.original_issued_at or at)
        if numbering.fiscal_year(at) != year:
            raise YearTurned(f"the financial year turned while numbering {series}")
    number = numbering.format_number(series, year, seq)
    doc = replace(draft, number=number, issued_at=at)
    values = {
        "id": invoice_id,
        "kind": kind.value,
        "series": series,
        "fiscal_year": year,
        "seq": seq,
        "number": number,
        "payment_id": payment.id,
        "refund_id": refund_id,
        "original_invoice_id": original.id if original else None,
        "user_id": payment.user_id,
        "issued_at": at,
        "place_of_supply": doc.place_of_supply,
        "taxable_paise": doc.taxable_paise,
        "cgst_paise": doc.cgst_paise,
        "sgst_paise": doc.sgst_paise,
        "igst_paise": doc.igst_paise,
        "total_paise": doc.total_paise,
        "document": doc.to_json(),
    }
    created_at = await repo.insert_issued(conn, values, f"{kind.value}.issued")
    DOCUMENTS_ISSUED.labels(kind.value).inc()
    log.info("document.issued", kind=kind.value, number=number, payment_id=str(payment.id))
    return Invoice(
        id=invoice_id,
        kind=kind,
        series=series,
        fiscal_year=year,
        seq=seq,
        number=number,
        payment_id=payment.id,
        refund_id=refund_id,
        original_invoice_id=original.id if original else None,
        user_id=payment.user_id,
        issued_at=at,
        place_of_supply=doc.place_of_supply,
        taxable_paise=doc.taxable_paise,
        cgst_paise=doc.cgst_paise,
        sgst_paise=doc.sgst_paise,
        igst_paise=doc.igst_paise,
        total_paise=doc.total_paise,
        document=doc.to_json(),
        pdf_key=None,
        pdf_sha256=None,
        pdf_bytes=None,
        pdf_stored_at=None,
        created_at=created_at,
    )


async def issue_invoice(
    conn: AsyncConnection, settings: Settings, payment_id: uuid.UUID, *, at: datetime | None = None
) -> Invoice:
    """The tax invoice of a credited purchase (or of the platform's fee in a payment handed
    over, such as a sponsorship's); issued once, returned ever after."""
    payment = await payments.get(conn, payment_id, lock=True)
    if payment is None:
        raise NotFound(f"payment {payment_id} does not exist")
    if (existing := await repo.tax_invoice_of(conn, payment.id)) is not None:
        return existing
    if payment.status is not PaymentStatus.CREDITED:
        raise DocumentPending(f"payment {payment.id} is {payment.status.value}, not credited")
    when = at or datetime.now(UTC)
    draft = TaxDocument(
        kind=DocumentKind.tax_invoice,
        number="",
        issued_at=when,
        seller=seller(settings),
        buyer=await _buyer(conn, payment),
        place_of_supply=payment.buyer_state,
        lines=(_line(settings, payment),),
        taxable_paise=payment.taxable_paise,
        cgst_paise=payment.cgst_paise,
        sgst_paise=payment.sgst_paise,
        igst_paise=payment.igst_paise,
        # What the invoice is for: the platform's own supply. A purchase's whole amount; of a
        # payment that also collects for someone else (a sponsorship), only our fee and its
        # tax (the rest was never our supply and is not invoiced by us).
        total_paise=payment.taxable_paise + payment.gst_amount_paise,
        rate_bp=payment.gst_rate_bp,
        gst_mode=payment.gst_mode,
        payment_reference=_reference(payment.order_id, payment.cashfree_payment_id),
        payment_mode=_payment_mode(payment),
        payment_status="Paid",
    )
    return await _issue(
        conn,
        settings,
        kind=DocumentKind.tax_invoice,
        payment=payment,
        at=when,
        draft=draft,
        fixed_time=at,
    )


def _reference(order_id: str, gateway_id: str | None) -> str:
    return f"order {order_id}" + (f", Cashfree {gateway_id}" if gateway_id else "")


async def issue_credit_note(
    conn: AsyncConnection, settings: Settings, refund_id: uuid.UUID, *, at: datetime | None = None
) -> Invoice | None:
    """The credit note of a successful refund, against the purchase's tax invoice (issued
    first, in this same transaction, if its own message has not arrived yet). None when the
    refund returned none of our supply (a sponsorship refund whose share of the fee and GST
    rounds to nothing): no taxable value or tax is reduced, so there is nothing to credit."""
    refund = await refunds.get(conn, refund_id)
    if refund is None:
        raise NotFound(f"refund {refund_id} does not exist")
    original = await issue_invoice(conn, settings, refund.payment_id, at=at)
    if (existing := await repo.credit_note_of(conn, refund.id)) is not None:
        return existing
    if refund.status is not RefundStatus.SUCCESS:
        raise DocumentPending(f"refund {refund.id} is {refund.status.value}, not done")
    if refund.amount_paise == refund.passthrough_paise:
        return None
    payment = await payments.get(conn, refund.payment_id)
    assert payment is not None
    when = max(at or datetime.now(UTC), original.issued_at)
    credits = refund.base_credits + refund.bonus_credits
    if payment.buys_credits:
        line = LineItem(
            description=f"Refund of {_describe(payment)}: {credits:,} credits returned",
            sac=settings.invoice_sac_code,
            quantity=1,
            unit="refund",
            taxable_paise=refund.taxable_paise,
            unit_price_paise=refund.taxable_paise,
            tax_paise=refund.cgst_paise + refund.sgst_paise + refund.igst_paise,
        )
    else:
        fee = _line(settings, payment)
        line = replace(
            fee,
            description=f"Refund of {fee.description}"[:300],
            taxable_paise=refund.taxable_paise,
            unit_price_paise=refund.taxable_paise,
            tax_paise=refund.cgst_paise + refund.sgst_paise + refund.igst_paise,
        )
    draft = TaxDocument(
        kind=DocumentKind.credit_note,
        number="",
        issued_at=when,
        seller=seller(settings),
        buyer=await _buyer(conn, payment),
        place_of_supply=payment.buyer_state,
        lines=(line,),
        taxable_paise=refund.taxable_paise,
        cgst_paise=refund.cgst_paise,
        sgst_paise=refund.sgst_paise,
        igst_paise=refund.igst_paise,
        # Our supply's part of the refund: all of a purchase's; of a sponsorship's, the fee
        # and GST (the escrow returned was never our supply).
        total_paise=refund.amount_paise - refund.passthrough_paise,
        rate_bp=payment.gst_rate_bp,
        gst_mode=payment.gst_mode,
        payment_reference=_reference(payment.order_id, refund.cf_refund_id)
        + f", refund {refund.refund_ref}",
        payment_mode=_payment_mode(payment),
        # Where the payment stood when the note was issued (every refund that has
        # succeeded by then counted).
        payment_status="Refunded in full" if payment.refunded else "Partly refunded",
        original_number=original.number,
        original_issued_at=original.issued_at,
        reason=refund.reason,
    )
    return await _issue(
        conn,
        settings,
        kind=DocumentKind.credit_note,
        payment=payment,
        at=when,
        draft=draft,
        fixed_time=at,
        refund_id=refund.id,
        original=original,
    )


def _render_counted(doc: TaxDocument) -> bytes:
    # This thread's CPU only: the figure the render budget is set in, whatever else the
    # process is doing meanwhile.
    started = time.thread_time()
    pdf = render_pdf(doc)
    PDF_RENDER_CPU.labels(doc.kind.value).observe(time.thread_time() - started)
    return pdf


async def store_pdf(conn: AsyncConnection, store: DocumentStore, invoice_id: uuid.UUID) -> Invoice:
    """Draw the document's PDF and store it, once. The row is locked so two workers never
    race; a PDF already under the key (a crash after storing, before recording) is an
    earlier drawing of this same document and is kept as it is."""
    invoice = await repo.get(conn, invoice_id, lock=True)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} does not exist")
    if invoice.pdf_key is not None:
        return invoice
    # One drawing at a time per process, on a thread of its own: fpdf2 is pure Python and
    # holds the GIL, and many drawings at once would starve the event loop that is
    # committing other transactions (some holding a series' counter row).
    pdf = await asyncio.get_running_loop().run_in_executor(
        _RENDERER, _render_counted, invoice.tax_document
    )
    key = invoice.pdf_object_key
    try:
        stored = await store.put(key, pdf, "application/pdf")
    except ObjectConflict:
        stored = StoredObject.of(key, await store.get(key))
    await repo.set_pdf(conn, invoice.id, key, stored.sha256, stored.size)
    done = await repo.get(conn, invoice.id)
    assert done is not None
    return done


async def get_invoice(conn: AsyncConnection, caller: Principal, invoice_id: uuid.UUID) -> Invoice:
    invoice = await repo.get(conn, invoice_id)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} does not exist")
    buyer = not auth.reads_everyone(caller) and await users.is_subject(
        conn, invoice.user_id, caller.sub
    )
    auth.may_read(caller, invoice, buyer=buyer)
    return invoice


async def documents_of_payment(
    conn: AsyncConnection, payment_id: uuid.UUID, refund_ids: list[uuid.UUID]
) -> list[Invoice]:
    """A payment's tax invoice, then its refunds' credit notes (for staff: the finance
    console, whose pages are for staff readers only)."""
    invoice = await repo.tax_invoice_of(conn, payment_id)
    notes = await repo.credit_notes_of(conn, refund_ids)
    return ([invoice] if invoice else []) + notes
