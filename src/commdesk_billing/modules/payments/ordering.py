"""Opening orders: a buyer (a person over HTTP, or a system actor such as auto-recharge)
asks for a pack or a top-up; the payment row is written first, then the order is opened at
Cashfree, and a failed payment can be retried."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    GatewayRejected,
    GatewayUnavailable,
    IdempotencyMismatch,
    PaymentBlocked,
    PaymentNotRetryable,
    TooManyOpenOrders,
)
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import (
    CashfreeConflict,
    CashfreeError,
    CashfreeRejected,
)
from commdesk_billing.gateway.models import Order, OrderStatus
from commdesk_billing.gateway.split_models import SplitShare
from commdesk_billing.idempotency.keys import Answer
from commdesk_billing.modules.fraud import screening
from commdesk_billing.modules.fraud import service as fraud
from commdesk_billing.modules.fraud.rules import Action as FraudAction
from commdesk_billing.modules.payments import auth, buyers, risk
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import CREDIT_KINDS, Payment
from commdesk_billing.modules.payments.quotes import quote
from commdesk_billing.modules.payments.schemas import OrderRequest
from commdesk_billing.modules.payments.service import IST, describe, existing
from commdesk_billing.modules.payments.state import OPEN, RETRYABLE, Status, move, move_returning
from commdesk_billing.modules.payments.transitions import cancel_refused, hold_for_review
from commdesk_billing.modules.tax.gst import GstBreakdown
from commdesk_billing.modules.wallet import service as wallet_service
from commdesk_billing.security.jwt import Principal

log = structlog.get_logger(__name__)


def _request_hash(req: OrderRequest, retry_of: uuid.UUID | None) -> str:
    body = req.model_dump(mode="json")
    body["retry_of"] = str(retry_of) if retry_of else None
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class _OverLimit(Exception):
    def __init__(self, user_id: uuid.UUID) -> None:
        super().__init__(str(user_id))
        self.user_id = user_id


class _Blocked(Exception):
    def __init__(self, screened: screening.Screening) -> None:
        super().__init__(str(screened.id))
        self.screened = screened


def new_order_id() -> str:
    return "cdb_" + uuid.uuid4().hex


# --- createPaymentOrder / createPaymentSession -----------------------------------------


@dataclass(frozen=True)
class Buyer:
    """Who an order is for, and who asked for it: a person over HTTP, or a system actor
    (auto-recharge, a subscription renewal) acting for them."""

    subject: str  # the buyer's JWT subject; their wallet receives the credits
    email: str | None
    name: str | None
    requested_by: str
    # The idempotency scope of the order: one order per key and scope, ever.
    scoped_key: str

    @classmethod
    def person(cls, principal: Principal, key: str) -> Buyer:
        # Length-prefixed, so no (sub, key) pair can spell another's: "a:b"+"c" vs "a"+"b:c".
        return cls(
            subject=principal.sub,
            email=principal.email,
            name=principal.name,
            requested_by=principal.sub,
            scoped_key=f"{len(principal.sub)}:{principal.sub}:{key}",
        )

    @classmethod
    def system(cls, actor: str, subject: str, key: str) -> Buyer:
        """`actor` names the job (e.g. "auto-recharge"); `key` is its own deterministic key
        (e.g. the mandate and the period), so a re-run opens nothing twice. The scope starts
        with a letter, a person's with a digit: the two can never collide."""
        if not actor or ":" in actor:
            raise ValueError("a system actor is a name without ':'")
        return cls(
            subject=subject,
            email=None,
            name=None,
            requested_by=f"system:{actor}",
            scoped_key=f"system:{actor}:{len(subject)}:{subject}:{key}",
        )


async def create_payment_order(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    principal: Principal,
    req: OrderRequest,
    key: str,
    *,
    retry_of: uuid.UUID | None = None,
    screen: screening.Context | None = None,
) -> Answer:
    """An order a person asked for over HTTP, under their Idempotency-Key; scored for
    fraud before its row is written (`screen`: where the request came from)."""
    return await open_order(
        engine,
        client,
        settings,
        Buyer.person(principal, key),
        req,
        retry_of=retry_of,
        screen=screen,
    )


async def open_order(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    buyer: Buyer,
    req: OrderRequest,
    *,
    retry_of: uuid.UUID | None = None,
    screen: screening.Context | None = None,
) -> Answer:
    """A credit purchase: a pack or a top-up, priced by `quotes`."""

    async def values(conn: AsyncConnection, user_id: uuid.UUID) -> dict[str, Any]:
        who = await buyers.resolve(conn, settings, user_id, req.buyer_state)
        buyer_state = who.state_code
        q = await quote(
            conn,
            settings,
            pack_code=req.pack_code,
            amount_paise=req.amount_paise,
            buyer_state=buyer_state,
        )
        return {
            "kind": q.kind,
            "pack_code": q.pack.code if q.pack else None,
            "pack_version": q.pack.version if q.pack else None,
            **gst_columns(q.gst),
            "amount_paise": q.gst.amount_paise,
            "buyer_state": buyer_state,
            "base_credits": q.base_credits,
            "bonus_credits": q.bonus_credits,
            "customer_phone": req.customer_phone,
            "customer_email": req.customer_email,
            "retry_of": retry_of,
            "metadata": {
                "requested_by": buyer.requested_by,
                **({"pack_name": q.pack.name} if q.pack else {}),
                **who.metadata(),
            },
        }

    payment = await write_row(
        engine, settings, buyer, _request_hash(req, retry_of), values, screen=screen
    )
    return await _open(engine, client, settings, payment)


@dataclass(frozen=True)
class Charge:
    """A payment that buys no credits, its figures fixed by the module that asks for it
    (a sponsorship, `kind`): `gst` is the platform's own supply in it (taxable value and
    tax, invoiced to the buyer), `passthrough_paise` what it collects for someone else.
    Cashfree is asked for their sum."""

    kind: str
    gst: GstBreakdown
    passthrough_paise: int
    customer_phone: str
    customer_email: str | None
    buyer_state: str
    # What was paid for, in words: the tax invoice's line names it ("sponsorship of …").
    about: str
    # The caller's request as it came: a repeat of the Idempotency-Key must bring the same.
    request: dict[str, Any]
    # Easy Split (cashfree.md §14.1): vendors' shares in exact paise, carried by the order;
    # Cashfree settles each to its vendor. Kept on the payment row (`metadata`), so every
    # create of the order sends them and every check of Cashfree's order compares them.
    splits: tuple[SplitShare, ...] = ()


# Writes the caller's own row for the payment, in the payment row's transaction.
Attach = Callable[[AsyncConnection, Payment], Awaitable[None]]


async def open_charge(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    buyer: Buyer,
    charge: Charge,
    attach: Attach,
) -> Payment:
    """Open an order for a `Charge` through the same path as a purchase (row first, then
    Cashfree under our order id, then ACTIVE; a repeat resumes). `attach` is called once,
    in the transaction that writes the payment row, so the caller's row exists exactly when
    the payment does. Returns the payment as it is after the call."""
    if charge.kind in CREDIT_KINDS or charge.passthrough_paise <= 0:
        raise ValueError("a charge collects for someone else and buys no credits")
    if any(s.amount_paise is None for s in charge.splits) or (
        sum(s.amount_paise or 0 for s in charge.splits) > charge.passthrough_paise
    ):
        raise ValueError("a charge's splits are exact paise out of what it collects for others")
    canonical = json.dumps(
        {"kind": charge.kind, **charge.request}, sort_keys=True, separators=(",", ":")
    )

    async def values(conn: AsyncConnection, user_id: uuid.UUID) -> dict[str, Any]:
        return {
            "kind": charge.kind,
            **gst_columns(charge.gst),
            "amount_paise": charge.gst.amount_paise + charge.passthrough_paise,
            "passthrough_paise": charge.passthrough_paise,
            "buyer_state": charge.buyer_state,
            "base_credits": 0,
            "bonus_credits": 0,
            "customer_phone": charge.customer_phone,
            "customer_email": charge.customer_email,
            "metadata": {
                "requested_by": buyer.requested_by,
                "about": charge.about,
                **(
                    {
                        "order_splits": [
                            {"vendor_id": s.vendor_id, "amount_paise": s.amount_paise}
                            for s in charge.splits
                        ]
                    }
                    if charge.splits
                    else {}
                ),
            },
        }

    payment = await write_row(
        engine,
        settings,
        buyer,
        hashlib.sha256(canonical.encode()).hexdigest(),
        values,
        attach=attach,
    )
    await _open(engine, client, settings, payment)
    current = await in_transaction(engine, lambda conn: repo.get(conn, payment.id))
    assert current is not None
    return current


def gst_columns(gst: GstBreakdown) -> dict[str, Any]:
    """The payment row's tax columns for a GST breakdown (also used by `mandate_charges`)."""
    return {
        "taxable_paise": gst.taxable_paise,
        "gst_amount_paise": gst.tax_paise,
        "cgst_paise": gst.cgst_paise,
        "sgst_paise": gst.sgst_paise,
        "igst_paise": gst.igst_paise,
        "gst_mode": gst.mode,
        "gst_rate_bp": gst.rate_bp,
    }


async def write_row(
    engine: AsyncEngine,
    settings: Settings,
    buyer: Buyer,
    request_hash: str,
    values: Callable[[AsyncConnection, uuid.UUID], Awaitable[dict[str, Any]]],
    *,
    attach: Attach | None = None,
    limit_open_orders: bool = True,
    screen: screening.Context | None = None,
) -> Payment:
    """Step 1: the payment row (CREATED) under the buyer's scoped key, or the one a first
    request with that key wrote. Shared with `mandate_charges` (a charge on a mandate is
    written the same way): `values` gives the row's figures, `attach` runs in the insert's
    transaction only when this call wrote the row. `limit_open_orders`: refuse past the
    member's unpaid-checkout limit (off for a charge on a mandate, which is no checkout)."""
    scoped_key = buyer.scoped_key

    async def open_row(conn: AsyncConnection) -> Payment:
        existing = await repo.by_idempotency_key(conn, scoped_key)
        if existing is not None:
            return existing
        wallet = await wallet_service.get_or_create_user_wallet(
            conn, buyer.subject, email=buyer.email, name=buyer.name
        )
        user_id = wallet.owner_id
        if (
            limit_open_orders
            and await repo.count_open_orders(conn, user_id) >= settings.max_open_orders_per_user
        ):
            raise _OverLimit(user_id)
        figures = await values(conn, user_id)
        screened = None
        if screen is not None and settings.fraud_enabled:
            screened = await risk.screen(
                conn, screen, settings, buyer.subject, buyer.scoped_key, wallet.id, user_id, figures
            )
            if screened.action is FraudAction.block:
                raise _Blocked(screened)
            figures["fraud_score"] = float(screened.verdict.score)
        inserted = await repo.insert(
            conn,
            {
                "id": uuid.uuid4(),
                "user_id": user_id,
                "wallet_id": wallet.id,
                "order_id": new_order_id(),
                "idempotency_key": scoped_key,
                "request_hash": request_hash,
                "status": Status.CREATED.value,
                "seller_state": settings.seller_state_code,
                "order_expires_at": datetime.now(IST)
                + timedelta(seconds=settings.payment_order_ttl_s),
                **figures,
            },
        )
        if inserted is None:
            # A concurrent request with this key won the insert (and attached).
            found = await repo.by_idempotency_key(conn, scoped_key)
            assert found is not None
            return found
        if attach is not None:
            await attach(conn, inserted)
        if screened is not None:
            await screening.record_order(conn, screened, inserted.id)
        return inserted

    over_limit: uuid.UUID | None = None
    blocked: screening.Screening | None = None
    try:
        payment = await in_transaction(engine, open_row)
    except _OverLimit as over:
        over_limit = over.user_id
    except _Blocked as refused:
        blocked = refused.screened
    if blocked is not None:
        # Recorded apart, as the limit is: nothing of the order is kept, only the refusal.
        screened = blocked
        await in_transaction(engine, lambda conn: screening.record_blocked(conn, screened))
        raise PaymentBlocked("this payment cannot be made; contact support") from None
    if over_limit is not None:
        # Recorded apart: the refused transaction rolls back, the fact must not.
        await in_transaction(
            engine,
            lambda conn: fraud.record(
                conn,
                "open_order_limit",
                severity="low",
                user_id=over_limit,
                details={"limit": settings.max_open_orders_per_user},
            ),
        )
        raise TooManyOpenOrders(
            f"at most {settings.max_open_orders_per_user} unpaid orders at a time",
            limit=settings.max_open_orders_per_user,
        ) from None
    if payment.request_hash != request_hash:
        raise IdempotencyMismatch("Idempotency-Key was already used for a different order")
    return payment


async def _open(
    engine: AsyncEngine, client: CashfreeClient, settings: Settings, payment: Payment
) -> Answer:
    """Steps 2 and 3, or the first answer again if they were done."""
    if payment.create_response is not None:
        return Answer(201, payment.create_response, replayed=True)
    if payment.status is Status.CANCELLED:
        raise GatewayRejected(payment.failure_reason or "Cashfree refused this order")
    return await _open_at_gateway(engine, client, settings, payment)


async def _open_at_gateway(
    engine: AsyncEngine, client: CashfreeClient, settings: Settings, payment: Payment
) -> Answer:
    try:
        order = await _create_or_fetch(client, settings, payment)
    except CashfreeRejected as exc:
        reason = f"{exc.code or 'rejected'}: {exc.message}"[:500]
        code = exc.code or "gateway_rejected"
        if exc.status == 400:
            # Cashfree refused the request itself (a bad phone, an amount it will not take):
            # that order will never exist, so the payment is closed. Anything else (our
            # credentials, a 404 after a 409) says nothing about the order: it stays CREATED
            # for the repeat or the sync.

            await in_transaction(
                engine,
                lambda conn: cancel_refused(
                    conn,
                    payment.id,
                    reason="cashfree refused the order",
                    failure_code=code,
                    failure_reason=reason,
                ),
            )
        raise GatewayRejected(reason, gateway_status=exc.status) from exc
    except CashfreeError as exc:
        # Outcome unknown: the row stays CREATED. Repeating the request (same key) resumes
        # here, and the sync job settles it if nobody does.
        raise GatewayUnavailable(
            "Cashfree did not answer; repeat the request with the same Idempotency-Key",
            retry_after_s=5,
        ) from exc

    async def activate(conn: AsyncConnection) -> Any:
        if not order_matches(order, payment):
            await hold_for_review(
                conn,
                payment,
                "order_mismatch_at_create",
                details={"cashfree": order.model_dump(mode="json")},
                reason="order differs at Cashfree",
            )
            return None
        moved = await move_returning(
            conn,
            payment.id,
            Status.ACTIVE,
            reason="order opened at cashfree",
            payment_session_id=order.payment_session_id,
            cashfree_order_id=order.cf_order_id,
        )
        if moved is not None:
            current = moved[1]
        else:
            # Someone got there first (a concurrent duplicate, or the sync found the order):
            # keep the session id if the row has none yet, and answer with the row as it is.
            await repo.set_session_if_missing(
                conn, payment.id, order.payment_session_id, order.cf_order_id
            )
            found = await repo.get(conn, payment.id)
            assert found is not None
            current = found
        cancelled.append(current.status is Status.CANCELLED)
        return await repo.store_create_response(conn, payment.id, describe(settings, current))

    cancelled: list[bool] = []
    body = await in_transaction(engine, activate)
    if body is None:
        raise GatewayRejected("the order Cashfree holds does not match ours; under review")
    if cancelled and cancelled[-1]:
        await _terminate_late_order(client, payment)
    return Answer(201, body, replayed=False)


async def _terminate_late_order(client: CashfreeClient, payment: Payment) -> None:
    """The buyer cancelled while our create call was on its way (the cancel found no order
    at Cashfree): the order it made must not stay payable. Best effort: if this fails, the
    order is still ours to honour — a payment on it moves the CANCELLED row to PAID, and the
    sync asks about it until its expiry."""
    try:
        await client.terminate_order(payment.order_id)
        log.info("payment.late_order_terminated", payment_id=str(payment.id))
    except CashfreeError as exc:
        log.warning("payment.late_order_not_terminated", payment_id=str(payment.id), error=str(exc))


async def _create_or_fetch(client: CashfreeClient, settings: Settings, p: Payment) -> Order:
    try:
        return await client.create_order(
            order_id=p.order_id,
            amount_paise=p.amount_paise,
            customer_id="u_" + p.user_id.hex,
            customer_phone=p.customer_phone or "",
            customer_email=p.customer_email,
            return_url=settings.payment_return_url,
            notify_url=settings.public_base_url.rstrip("/") + "/v1/webhooks/cashfree",
            expiry_time=p.order_expires_at.astimezone(IST).isoformat(timespec="seconds"),
            tags={"payment_id": str(p.id)},
            order_splits=[SplitShare(v, amount_paise=a) for v, a in splits_of(p)] or None,
            # No x-idempotency-key: Cashfree would replay a first 5xx for it for ever. Our
            # order_id is the deduplication (a second create is a 409, answered by a fetch).
        )
    except CashfreeConflict:
        # Our own earlier call created it (we crashed or timed out before the answer).
        return await client.fetch_order(p.order_id)


def splits_of(p: Payment) -> list[tuple[str, int]]:
    """The Easy Split shares the payment's order carries: (vendor id, paise), sorted."""
    shares = p.metadata.get("order_splits") or []
    return sorted((str(s["vendor_id"]), int(s["amount_paise"])) for s in shares)


def order_matches(order: Order, p: Payment) -> bool:
    """Cashfree's order is ours: id, currency, amount and (Easy Split) the vendors' shares,
    each in exact paise. An order split other than we asked would settle money to someone
    our books do not name."""
    echoed = sorted(
        (
            s.vendor_id or "",
            s.amount_paise if s.amount_paise is not None and s.percentage is None else -1,
        )
        for s in order.order_splits or []
        if s.vendor_id is not None or s.amount_paise is not None
    )
    return (
        order.order_id == p.order_id
        and order.order_currency == p.currency
        and order.order_amount_paise == p.amount_paise
        and echoed == splits_of(p)
    )


# --- retryFailedPayment ----------------------------------------------------------------


async def retry_failed_payment(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    principal: Principal,
    payment_id: uuid.UUID,
    key: str,
    *,
    screen: screening.Context | None = None,
) -> Answer:
    """Another go at a payment that did not complete: on the same order while Cashfree still
    takes payments on it, else on a new order linked to the old one (`retry_of`)."""
    payment = await in_transaction(engine, lambda conn: _owned(conn, principal, payment_id))
    if payment.on_mandate:
        # A charge on a mandate has no checkout: its debit is retried by Cashfree (UPI), and
        # a new charge is raised by whoever raised this one.
        raise PaymentNotRetryable("a charge on a mandate is not retried at checkout")
    if payment.status not in RETRYABLE | {Status.EXPIRED, Status.CANCELLED, Status.ACTIVE}:
        raise PaymentNotRetryable(f"a {payment.status.value} payment cannot be retried")
    if payment.status in OPEN:
        try:
            order = await client.fetch_order(payment.order_id)
        except CashfreeError as exc:
            raise GatewayUnavailable("Cashfree did not answer; try again") from exc
        if order.order_status == OrderStatus.ACTIVE:

            async def reopen(conn: AsyncConnection) -> Any:
                current = await repo.get(conn, payment.id, lock=True)
                assert current is not None
                if current.status in RETRYABLE:
                    await move(
                        conn,
                        payment.id,
                        Status.ACTIVE,
                        reason="buyer retries on the same order",
                        retry_count=current.retry_count + 1,
                    )
                fresh = await repo.get(conn, payment.id)
                assert fresh is not None
                return describe(settings, fresh)

            return Answer(200, await in_transaction(engine, reopen), replayed=False)
        if order.order_status == OrderStatus.PAID:
            raise PaymentNotRetryable("this order is already paid; credits are on their way")
    if not payment.buys_credits:
        # A new order would be a credit purchase of the same amount: never. A sponsorship
        # whose order closed unpaid is made again (POST /v1/sponsorships).
        raise PaymentNotRetryable(
            f"a {payment.kind} payment is retried on its own order only, while it is open"
        )
    req = OrderRequest(
        pack_code=payment.pack_code,
        amount_paise=None if payment.pack_code else payment.amount_paise,
        customer_phone=payment.customer_phone or "",
        customer_email=payment.customer_email,
        buyer_state=payment.buyer_state,
    )
    return await create_payment_order(
        engine,
        client,
        settings,
        principal,
        req,
        f"retry:{payment.id}:{key}",
        retry_of=payment.id,
        screen=screen,
    )


async def _owned(conn: AsyncConnection, principal: Principal, payment_id: uuid.UUID) -> Payment:
    payment = await existing(conn, payment_id)
    await auth.authorize_retry(conn, principal, payment)
    return payment
