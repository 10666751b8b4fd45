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
from commdesk_billing.modules.payments.schemas import PaymentOut
from commdesk_billing.modules.paymentstory.reads import MAX_REFUNDS, story_of
from commdesk_billing.modules.paymentstory.schemas import PaymentView, Timeline, TimelineEntry
from commdesk_billing.modules.paymentstory.timeline import timeline
from commdesk_billing.modules.refunds import auth as refund_auth
from commdesk_billing.modules.refunds import reads as refunds
from commdesk_billing.modules.refunds.schemas import RefundOut
from commdesk_billing.problems import documented
from commdesk_billing.security.roles import STAFF_READERS

router = APIRouter(prefix="/v1", tags=["payments"])

EXPANSIONS = ("invoice", "refunds")

_PROBLEMS = documented(
    {
        400: "`expand` names something else than invoice and refunds (`invalid_expand`), or a "
        "query parameter unknown or sent twice",
        401: "No valid bearer token",
        403: "Not the buyer nor finance_admin, support or auditor; or expand=invoice by "
        "support (tax documents are read by their buyer, finance_admin and auditor)",
        404: "No payment has this id or order id",
        422: "The reference is neither a payment id nor an order id "
        "(1-45 letters, digits, `_` or `-`, at least 3)",
    }
)

PaymentRef = Annotated[
    str,
    Path(
        pattern=refs.REF_PATTERN,
        description="The payment's id (a UUID), or its order id (`order_id`, what Cashfree's "
        "return URL carries)",
        examples=["0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1", "cdb_5f0c2b8e9a2d4c0f8f3a7c1d2e4b6a80"],
    ),
]

_PAYMENT_EXAMPLE: dict[str, Any] = {
    "id": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
    "order_id": "cdb_5f0c2b8e9a2d4c0f8f3a7c1d2e4b6a80",
    "status": "CREDITED",
    "kind": "pack",
    "pack_code": "pack_300",
    "amount_paise": 35400,
    "taxable_paise": 30000,
    "gst_amount_paise": 5400,
    "credits": 330,
    "credits_granted": 330,
    "payment_method": "upi",
    "paid_at": "2026-12-07T09:12:41Z",
    "credited_at": "2026-12-07T09:12:42Z",
    "invoice": {"number": "CDB/2026-27/000123", "kind": "tax_invoice", "total_paise": 35400},
    "refunds": [{"refund_ref": "cdr_7a1c", "status": "SUCCESS", "amount_paise": 10000}],
}
_TIMELINE_EXAMPLE: dict[str, Any] = {
    "payment_id": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
    "order_id": "cdb_5f0c2b8e9a2d4c0f8f3a7c1d2e4b6a80",
    "status": "CREDITED",
    "entries": [
        {
            "type": "order_created",
            "at": "2026-12-07T09:12:03Z",
            "summary": "order cdb_5f0c… created for 35400 paise",
            "ref": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
            "data": {"amount_paise": 35400, "kind": "pack"},
        },
        {
            "type": "attempt",
            "at": "2026-12-07T09:12:40Z",
            "summary": "upi attempt: SUCCESS",
            "ref": "5114910234",
            "data": {"status": "SUCCESS", "amount_paise": 35400, "payment_group": "upi"},
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
            "summary": "purchase 300 credits (balance 0 → 300)",
            "ref": "9e0f3c1a-55d1-4f0e-a4b1-0d6c3c0d9e21",
            "data": {"transaction_type": "purchase", "credits": 300, "balance_after": 300},
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
    responses={**_PROBLEMS, 200: {"content": {"application/json": {"example": _PAYMENT_EXAMPLE}}}},
    summary="A payment, by its id or its order id (the buyer; finance_admin, support, auditor)",
    description="`payment_id` is the payment's id or its `order_id`: a frontend coming back "
    "from Cashfree's checkout reads the payment with the order id in its return URL. "
    "`expand=invoice,refunds` (either or both) adds the tax invoice (`invoice`, null while "
    "none is issued) and the refunds (`refunds`, newest first); without `expand` neither "
    "key is present. support may not expand the invoice.",
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
        **_PROBLEMS,
        200: {"content": {"application/json": {"example": _TIMELINE_EXAMPLE}}},
    },
    summary="What happened to a payment, in time order (the buyer; finance_admin, support, "
    "auditor)",
    description="Attempts at Cashfree, webhooks received, state moves, credits granted (and "
    "taken back by refunds), refunds, the tax invoice and credit notes, oldest first. Each "
    "entry has a `type` from a fixed vocabulary: `order_created`, `status_changed`, "
    "`attempt`, `webhook`, `credits`, `refund_requested`, `refund_status_changed`, "
    "`invoice`, `credit_note`. `payment_id` is the payment's id or its order id.",
)
async def get_timeline(payment_id: PaymentRef, engine: Engine, caller: Caller) -> Timeline:
    async def work(conn: AsyncConnection) -> Timeline:
        p = await refs.readable(conn, caller, payment_id)
        story = await story_of(conn, caller, p)
        entries = timeline(story, staff=caller.role in STAFF_READERS)
        return Timeline(
            payment_id=p.id,
            order_id=p.order_id,
            status=p.status.value,
            entries=[TimelineEntry.of(e) for e in entries],
        )

    return await in_transaction(engine, work)
