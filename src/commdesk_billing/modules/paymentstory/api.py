"""Reading one payment: `GET /v1/payments/{payment_id}` (by id or by order id, with
`expand`) and `GET /v1/payments/{payment_id}/timeline`. Here rather than in payments'
routes because expanding reads the refunds and the tax documents, modules that depend on
payments (a payments route importing them would make a cycle)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine
from commdesk_billing.errors import Forbidden, InvalidExpand
from commdesk_billing.modules.invoices import auth as invoice_auth
from commdesk_billing.modules.invoices import service as invoices
from commdesk_billing.modules.invoices.schemas import InvoiceOut
from commdesk_billing.modules.payments import auth as payment_auth
from commdesk_billing.modules.payments import refs
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.schemas import PAYMENT_EXAMPLE, PaymentOut
from commdesk_billing.modules.paymentstory.reads import MAX_REFUNDS, story_of
from commdesk_billing.modules.paymentstory.schemas import PaymentView, Timeline, TimelineEntry
from commdesk_billing.modules.paymentstory.timeline import timeline
from commdesk_billing.modules.refunds import auth as refund_auth
from commdesk_billing.modules.refunds import reads as refunds
from commdesk_billing.modules.refunds.schemas import RefundOut
from commdesk_billing.problems import errors
from commdesk_billing.security.roles import STAFF_READERS

router = APIRouter(prefix="/v1", tags=["payments"])

EXPANSIONS = ("invoice", "refunds")

PaymentRef = Annotated[
    str,
    Path(
        pattern=refs.REF_PATTERN,
        description="The payment's id (a UUID), or its order id (`order_id`, what Cashfree's "
        "return URL carries)",
        examples=["0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1", "cdb_5f0c2b8e9a2d4c0f8f3a7c1d2e4b6a80"],
    ),
]

# `expand=invoice,refunds` on a pack bought and then partly refunded.
_PAYMENT_EXAMPLE: dict[str, Any] = {
    **PAYMENT_EXAMPLE,
    "invoice": {
        "id": "3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a98",
        "kind": "tax_invoice",
        "number": "CDB/2627/000123",
        "fiscal_year": "2026-27",
        "payment_id": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
        "refund_id": None,
        "original_invoice_id": None,
        "issued_at": "2026-12-07T14:42:43+05:30",
        "place_of_supply": "29",
        "taxable_paise": 25424,
        "cgst_paise": 2288,
        "sgst_paise": 2288,
        "igst_paise": 0,
        "total_paise": 30000,
        "amount_in_words": "Rupees Three Hundred Only",
        "pdf_available": True,
        "pdf_url": "/v1/invoices/3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a98/pdf",
        "pdf_key": "invoices/2026-27/CDB-2627-000123_3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a98.pdf",
        "document": {"number": "CDB/2627/000123", "place_of_supply": "29"},
    },
    "refunds": [
        {
            "id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
            "refund_ref": "cdr_1f2e3d4c5b6a79880f1e2d3c4b5a6978",
            "payment_id": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
            "order_id": "cdb_5f0c2b8e9a2d4c0f8f3a7c1d2e4b6a80",
            "status": "SUCCESS",
            "amount_paise": 10000,
            "taxable_paise": 8475,
            "cgst_paise": 763,
            "sgst_paise": 762,
            "igst_paise": 0,
            "passthrough_paise": 0,
            "base_credits": 1000,
            "bonus_credits": 67,
            "reason": "charged twice for the same pack",
            "requested_by": "commdesk",
            "cf_refund_id": "5520133881",
            "refund_arn": "RF2612071530000123",
            "status_description": "Refund processed successfully",
            "failure_reason": None,
            "created_at": "2026-12-07T15:30:00+05:30",
            "processed_at": "2026-12-07T15:31:12+05:30",
        }
    ],
}
_TIMELINE_EXAMPLE: dict[str, Any] = {
    "payment_id": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
    "order_id": "cdb_5f0c2b8e9a2d4c0f8f3a7c1d2e4b6a80",
    "status": "CREDITED",
    "entries": [
        {
            "type": "order_created",
            "at": "2026-12-07T09:12:03Z",
            "summary": "order cdb_5f0c… created for 30000 paise",
            "ref": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
            "data": {"amount_paise": 30000, "kind": "pack"},
        },
        {
            "type": "attempt",
            "at": "2026-12-07T09:12:40Z",
            "summary": "upi attempt: SUCCESS",
            "ref": "5114910234",
            "data": {"status": "SUCCESS", "amount_paise": 30000, "payment_group": "upi"},
        },
        {
            "type": "status_changed",
            "at": "2026-12-07T09:12:41Z",
            "summary": "ACTIVE → PAID",
            "ref": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
            "data": {"from": "ACTIVE", "to": "PAID"},
        },
        {
            "type": "credits",
            "at": "2026-12-07T09:12:42Z",
            "summary": "purchase 3000 credits (balance 0 → 3000)",
            "ref": "9e0f3c1a-55d1-4f0e-a4b1-0d6c3c0d9e21",
            "data": {"transaction_type": "purchase", "credits": 3000, "balance_after": 3000},
        },
    ],
}


def _expansions(raw: str | None) -> set[str]:
    if raw is None:
        return set()
    asked = {part.strip() for part in raw.split(",")}
    unknown = sorted(asked - set(EXPANSIONS))
    if unknown:
        raise InvalidExpand(
            f"`expand` takes a comma-separated list of {', '.join(EXPANSIONS)}",
            unknown=unknown,
            allowed=list(EXPANSIONS),
        )
    return asked


@router.get(
    "/payments/{payment_id}",
    response_model=PaymentView,
    response_model_exclude_unset=True,
    responses={
        **errors(
            {
                400: "`expand` names something else than `invoice` and `refunds` "
                "(`invalid_expand`, with `unknown` and `allowed`)",
                403: "Neither the buyer nor finance_admin, support or auditor, or a service "
                "token (`forbidden`); or support asking for `expand=invoice`: tax documents "
                "are read by their buyer, finance_admin and auditor (`forbidden`)",
                404: "No payment has this id or order id (`not_found`)",
                422: "The reference is neither a payment id nor an order id (3-45 letters, "
                "digits, `_` or `-`), or `expand` longer than 64 characters "
                "(`validation_error`)",
            }
        ),
        200: {"content": {"application/json": {"example": _PAYMENT_EXAMPLE}}},
    },
    summary="A payment, by its id or its order id (the buyer; finance_admin, support, auditor)",
)
async def get_payment(
    payment_id: PaymentRef,
    engine: Engine,
    settings: Config,
    caller: Caller,
    expand: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Comma-separated: `invoice`, `refunds`",
            examples=["invoice,refunds"],
        ),
    ] = None,
) -> PaymentView:
    """`payment_id` is the payment's id or its `order_id`: a frontend coming back from
    Cashfree's checkout reads the payment with the order id in its return URL and shows
    `status` (poll until it is CREDITED, FAILED, USER_DROPPED, EXPIRED or CANCELLED).
    `expand=invoice,refunds` (either or both) adds the tax invoice (`invoice`, null while
    none is issued) and the refunds (`refunds`, newest first); without `expand` neither key
    is present. support may not expand the invoice."""
    wanted = _expansions(expand)

    async def work(conn: AsyncConnection) -> PaymentView:
        p = await refs.readable(conn, caller, payment_id)
        view = PaymentOut.of(p, payments.checkout_url(settings, p)).model_dump()
        if "invoice" in wanted:
            if not (
                invoice_auth.reads_everyone(caller) or await payment_auth.is_buyer(conn, caller, p)
            ):
                raise Forbidden("tax documents are read by their buyer, finance_admin, auditor")
            docs = await invoices.documents_of_payment(conn, p.id, [])
            view["invoice"] = InvoiceOut.of(docs[0]) if docs else None
        if "refunds" in wanted:
            found, _ = await refunds.list_refunds(
                conn, caller, p.id, limit=MAX_REFUNDS, before=None
            )
            staff = refund_auth.staff_view(caller)
            view["refunds"] = [RefundOut.of(r, staff_view=staff) for r in found]
        return PaymentView(**view)

    return await in_transaction(engine, work)


@router.get(
    "/payments/{payment_id}/timeline",
    response_model=Timeline,
    responses={
        **errors(
            {
                403: "Neither the buyer nor finance_admin, support or auditor, or a service "
                "token (`forbidden`)",
                404: "No payment has this id or order id (`not_found`)",
                422: "The reference is neither a payment id nor an order id (3-45 letters, "
                "digits, `_` or `-`: `validation_error`)",
            }
        ),
        200: {"content": {"application/json": {"example": _TIMELINE_EXAMPLE}}},
    },
    summary="What happened to a payment, in time order (the buyer; finance_admin, support, "
    "auditor)",
)
async def get_timeline(payment_id: PaymentRef, engine: Engine, caller: Caller) -> Timeline:
    """Attempts at Cashfree, webhooks received, state moves, credits granted (and taken
    back by refunds), refunds, the tax invoice and credit notes, oldest first: what support
    reads when a member asks where their money or credits are. Each entry has a `type` from
    a fixed vocabulary (`order_created`, `status_changed`, `attempt`, `webhook`, `credits`,
    `refund_requested`, `refund_status_changed`, `invoice`, `credit_note`) and its figures
    in `data`. `payment_id` is the payment's id or its order id."""

    async def work(conn: AsyncConnection) -> Timeline:
        p = await refs.readable(conn, caller, payment_id)
        story = await story_of(conn, caller, p)
        entries = timeline(story, staff=caller.role in STAFF_READERS)
        return Timeline(
            payment_id=p.id,
            order_id=p.order_id,
            status=p.status,
            entries=[TimelineEntry.of(e) for e in entries],
        )

    return await in_transaction(engine, work)
