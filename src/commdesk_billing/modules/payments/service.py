"""Payment service: the seed's createPaymentOrder, createPaymentSession, verifyPayment,
syncPaymentStatus and retryFailedPayment.

No database transaction is held open across a call to Cashfree. Opening an order is three
steps: (1) write the payment row (CREATED) under the caller's Idempotency-Key, (2) create the
order at Cashfree under our own order id, which Cashfree keeps unique (so repeating the call
after a crash or timeout cannot open a second order), (3) move the row to ACTIVE and store the
answer. A repeat of the request resumes at whichever step was not done.

Credits are never granted here: `verify_payment` moves a payment to PAID only on what
Cashfree's API says (never on a webhook's or browser's word), and announces `wallet.credit`
in the same transaction; `crediting.credit_payment` grants.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    GatewayRejected,
    GatewayUnavailable,
    IdempotencyMismatch,
    NotFound,
    PaymentNotRetryable,
    TooManyOpenOrders,
)
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import (
    CashfreeConflict,
    CashfreeError,
    CashfreeNotFound,
    CashfreeRejected,
)
from commdesk_billing.gateway.models import Order, OrderStatus
from commdesk_billing.gateway.models import Payment as GatewayPayment
from commdesk_billing.gateway.models import PaymentStatus as GP
from commdesk_billing.idempotency.keys import Answer
from commdesk_billing.modules.fraud import service as fraud
from commdesk_billing.modules.payments import auth
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.quotes import quote
from commdesk_billing.modules.payments.schemas import OrderRequest, PaymentOut
from commdesk_billing.modules.payments.state import OPEN, RETRYABLE, Status, move
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.wallet import service as wallet_service
from commdesk_billing.queues import outbox
from commdesk_billing.security.jwt import Principal

log = structlog.get_logger(__name__)

IST = timezone(timedelta(hours=5, minutes=30))
# Past our own expiry, an order Cashfree still calls ACTIVE is terminated after this grace.
EXPIRY_GRACE = timedelta(seconds=60)


def checkout_url(settings: Settings, p: Payment) -> str | None:
    if not settings.cashfree_checkout_url or not p.payment_session_id:
        return None
    return settings.cashfree_checkout_url.replace("{payment_session_id}", p.payment_session_id)


def describe(settings: Settings, p: Payment) -> dict[str, Any]:
    return PaymentOut.of(p, checkout_url(settings, p)).model_dump(mode="json")


def _request_hash(req: OrderRequest, retry_of: uuid.UUID | None) -> str:
    body = req.model_dump(mode="json")
    body["retry_of"] = str(retry_of) if retry_of else None
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class _OverLimit(Exception):
    def __init__(self, user_id: uuid.UUID) -> None:
        super().__init__(str(user_id))
        self.user_id = user_id


def new_order_id() -> str:
    return "cdb_" + uuid.uuid4().hex


# --- createPaymentOrder / createPaymentSession -----------------------------------------


async def create_payment_order(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    principal: Principal,
    req: OrderRequest,
    key: str,
    *,
    retry_of: uuid.UUID | None = None,
) -> Answer:
    # Length-prefixed, so no (sub, key) pair can spell another's: "a:b"+"c" vs "a"+"b:c".
    scoped_key = f"{len(principal.sub)}:{principal.sub}:{key}"
    request_hash = _request_hash(req, retry_of)

    async def open_row(conn: AsyncConnection) -> Payment:
        existing = await repo.by_idempotency_key(conn, scoped_key)
        if existing is not None:
            return existing
        wallet = await wallet_service.get_or_create_user_wallet(
            conn, principal.sub, email=principal.email, name=principal.name
        )
        user_id = wallet.owner_id
        if await repo.count_open_orders(conn, user_id) >= settings.max_open_orders_per_user:
            raise _OverLimit(user_id)
        buyer_state = (
            req.buyer_state or await _buyer_state(conn, user_id) or settings.seller_state_code
        )
        q = await quote(
            conn,
            settings,
            pack_code=req.pack_code,
            amount_paise=req.amount_paise,
            buyer_state=buyer_state,
        )
        payment_id = uuid.uuid4()
        inserted = await repo.insert(
            conn,
            {
                "id": payment_id,
                "user_id": user_id,
                "wallet_id": wallet.id,
                "order_id": new_order_id(),
                "idempotency_key": scoped_key,
                "request_hash": request_hash,
                "kind": q.kind,
                "pack_code": q.pack.code if q.pack else None,
                "pack_version": q.pack.version if q.pack else None,
                "amount_paise": q.gst.amount_paise,
                "taxable_paise": q.gst.taxable_paise,
                "gst_amount_paise": q.gst.tax_paise,
                "cgst_paise": q.gst.cgst_paise,
                "sgst_paise": q.gst.sgst_paise,
                "igst_paise": q.gst.igst_paise,
                "gst_mode": q.gst.mode,
                "gst_rate_bp": q.gst.rate_bp,
                "buyer_state": buyer_state,
                "seller_state": settings.seller_state_code,
                "base_credits": q.base_credits,
                "bonus_credits": q.bonus_credits,
                "status": Status.CREATED.value,
                "customer_phone": req.customer_phone,
                "customer_email": req.customer_email,
                "retry_of": retry_of,
                "order_expires_at": datetime.now(IST)
                + timedelta(seconds=settings.payment_order_ttl_s),
                "metadata": {"requested_by": principal.sub},
            },
        )
        found = await repo.by_idempotency_key(conn, scoped_key)
        assert found is not None
        if not inserted:  # a concurrent request with this key won the insert
            return found
        return found

    buyer: uuid.UUID | None = None
    try:
        payment = await in_transaction(engine, open_row)
    except _OverLimit as over:
        buyer = over.user_id
    if buyer is not None:
        # Recorded apart: the refused transaction rolls back, the fact must not.
        await in_transaction(
            engine,
            lambda conn: fraud.record(
                conn,
                "open_order_limit",
                severity="low",
                user_id=buyer,
                details={"limit": settings.max_open_orders_per_user},
            ),
        )
        raise TooManyOpenOrders(
            f"at most {settings.max_open_orders_per_user} unpaid orders at a time",
            limit=settings.max_open_orders_per_user,
        ) from None
    if payment.request_hash != request_hash:
        raise IdempotencyMismatch("Idempotency-Key was already used for a different order")
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

            async def refused(conn: AsyncConnection) -> None:
                current = await repo.get(conn, payment.id, lock=True)
                if current is not None and current.status is Status.CREATED:
                    await move(
                        conn,
                        payment.id,
                        Status.CANCELLED,
                        reason="cashfree refused the order",
                        failure_code=code,
                        failure_reason=reason,
                    )

            await in_transaction(engine, refused)
        raise GatewayRejected(reason, gateway_status=exc.status) from exc
    except CashfreeError as exc:
        # Outcome unknown: the row stays CREATED. Repeating the request (same key) resumes
        # here, and the sync job settles it if nobody does.
        raise GatewayUnavailable(
            "Cashfree did not answer; repeat the request with the same Idempotency-Key",
            retry_after_s=5,
        ) from exc

    async def activate(conn: AsyncConnection) -> Any:
        if not _order_matches(order, payment):
            await fraud.record(
                conn,
                "order_mismatch_at_create",
                severity="high",
                payment_id=payment.id,
                user_id=payment.user_id,
                details={"cashfree": order.model_dump(mode="json")},
            )
            await move(conn, payment.id, Status.REVIEW, reason="order differs at Cashfree")
            return None
        moved = await move(
            conn,
            payment.id,
            Status.ACTIVE,
            reason="order opened at cashfree",
            payment_session_id=order.payment_session_id,
            cashfree_order_id=order.cf_order_id,
        )
        if moved is None:
            # Someone got there first (a concurrent duplicate, or the sync found the order):
            # keep the session id if the row has none yet, and answer with the row as it is.
            await repo.set_session_if_missing(
                conn, payment.id, order.payment_session_id, order.cf_order_id
            )
        current = await repo.get(conn, payment.id)
        assert current is not None
        return await repo.store_create_response(conn, payment.id, describe(settings, current))

    body = await in_transaction(engine, activate)
    if body is None:
        raise GatewayRejected("the order Cashfree holds does not match ours; under review")
    return Answer(201, body, replayed=False)


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
            # No x-idempotency-key: Cashfree would replay a first 5xx for it for ever. Our
            # order_id is the deduplication (a second create is a 409, answered by a fetch).
        )
    except CashfreeConflict:
        # Our own earlier call created it (we crashed or timed out before the answer).
        return await client.fetch_order(p.order_id)


def _order_matches(order: Order, p: Payment) -> bool:
    return (
        order.order_id == p.order_id
        and order.order_currency == p.currency
        and order.order_amount_paise == p.amount_paise
    )


# --- verifyPayment / syncPaymentStatus -------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """What Cashfree says about an order, fetched outside any transaction."""

    order: Order | None  # None: Cashfree has no such order
    payments: list[GatewayPayment]
    raw_payments: list[dict[str, Any]]  # exactly as Cashfree sent them: the evidence
    terminated: bool = False


# Attempts that may still end in SUCCESS: an order with one is not given up on.
OPEN_ATTEMPTS = frozenset({GP.PENDING, GP.NOT_ATTEMPTED})


async def fetch_truth(client: CashfreeClient, order_id: str, expires_at: datetime) -> Truth:
    try:
        order = await client.fetch_order(order_id)
    except CashfreeNotFound:
        return Truth(order=None, payments=[], raw_payments=[])
    pairs = await client.order_payments_raw(order_id)
    payments = [p for p, _ in pairs]
    terminated = False
    if (
        order.order_status == OrderStatus.ACTIVE
        and datetime.now(IST) > expires_at + EXPIRY_GRACE
        and not any(p.payment_status in OPEN_ATTEMPTS | {GP.SUCCESS} for p in payments)
    ):
        # Past our expiry and still open at Cashfree: close it so nobody can pay it now.
        order = await client.terminate_order(order_id)
        terminated = True
    return Truth(
        order=order, payments=payments, raw_payments=[r for _, r in pairs], terminated=terminated
    )


async def apply_truth(
    conn: AsyncConnection, settings: Settings, payment_id: uuid.UUID, truth: Truth, *, source: str
) -> Status:
    """Move the payment to where Cashfree's answer puts it (conditionally); on PAID,
    announce `wallet.credit` in the same transaction. Returns the status it ends in."""
    p = await repo.get(conn, payment_id, lock=True)
    if p is None:
        raise NotFound(f"payment {payment_id} does not exist")
    await repo.mark_synced(conn, p.id)
    order = truth.order
    if order is not None and _order_matches(order, p):
        for attempt, raw in zip(truth.payments, truth.raw_payments, strict=True):
            await repo.upsert_attempt(conn, p.id, attempt, raw)
    if p.status in (Status.PAID, Status.CREDITED, Status.REVIEW):
        if p.status is not Status.REVIEW:
            await _flag_extra_successes(conn, p, truth)
        if p.status is Status.PAID and source in ("sync", "manual"):
            # Crediting was announced with the move to PAID; announcing again is harmless
            # (credit_payment is idempotent) and heals a dead-lettered credit message.
            await _announce_credit(conn, p)
        return p.status
    if order is None:
        # Only once the order could no longer be paid anyway: before that, our own create
        # call may still be on its way (it can take minutes under rate limiting).
        if p.status is Status.CREATED and datetime.now(IST) > p.order_expires_at + EXPIRY_GRACE:
            await move(
                conn,
                p.id,
                Status.CANCELLED,
                reason="order never reached cashfree",
                failure_code="order_not_found",
                failure_reason="Cashfree has no such order",
            )
        return (await repo.get(conn, p.id) or p).status
    if not _order_matches(order, p):
        await fraud.record(
            conn,
            "order_mismatch",
            severity="high",
            payment_id=p.id,
            user_id=p.user_id,
            details={"cashfree_order": order.model_dump(mode="json"), "source": source},
        )
        await move(conn, p.id, Status.REVIEW, reason=f"order differs at cashfree ({source})")
        return Status.REVIEW
    successes = [a for a in truth.payments if a.payment_status == GP.SUCCESS]
    good = [
        a
        for a in successes
        if a.payment_amount_paise == p.amount_paise and (a.payment_currency or "INR") == "INR"
    ]
    if successes and not good:
        await fraud.record(
            conn,
            "payment_amount_mismatch",
            severity="high",
            payment_id=p.id,
            user_id=p.user_id,
            details={"attempts": truth.raw_payments, "source": source},
        )
        await move(conn, p.id, Status.REVIEW, reason="paid amount differs from the order")
        return Status.REVIEW
    if good:
        win = good[0]
        moved = await move(
            conn,
            p.id,
            Status.PAID,
            reason=f"cashfree reports success ({source})",
            cashfree_payment_id=win.cf_payment_id,
            payment_method=win.method,
            payment_group=win.payment_group,
            paid_at=win.payment_completion_time or win.payment_time or datetime.now(IST),
            webhook_verified=source == "webhook",
            failure_code=None,
            failure_reason=None,
        )
        if moved is not None:
            paid = await repo.get(conn, p.id)
            assert paid is not None
            await _announce_credit(conn, paid)
            await _flag_extra_successes(conn, paid, truth)
            return Status.PAID
        return p.status
    if order.order_status == OrderStatus.PAID:
        # Cashfree says paid but lists no successful attempt we can check: do nothing now;
        # the next sync looks again.
        log.warning("payment.paid_without_attempt", payment_id=str(p.id))
        return p.status
    if any(a.payment_status == GP.PENDING for a in truth.payments):
        # An attempt still in flight is honoured by Cashfree even past the order's expiry:
        # nothing is final until it ends.
        return p.status
    if order.order_status == OrderStatus.EXPIRED or (
        truth.terminated and order.order_status == OrderStatus.TERMINATED
    ):
        await move(conn, p.id, Status.EXPIRED, reason=f"order expired at cashfree ({source})")
        return Status.EXPIRED
    if order.order_status == OrderStatus.TERMINATED:
        await move(conn, p.id, Status.CANCELLED, reason=f"order terminated ({source})")
        return Status.CANCELLED
    if order.order_status != OrderStatus.ACTIVE:
        # TERMINATION_REQUESTED or a status we do not know: wait for a final one.
        return p.status
    # Still payable: reflect the latest finished attempt, if any.
    if p.status is Status.CREATED:
        await move(
            conn,
            p.id,
            Status.ACTIVE,
            reason=f"order found at cashfree ({source})",
            payment_session_id=order.payment_session_id,
            cashfree_order_id=order.cf_order_id,
        )
    latest = _latest(truth.payments)
    if (
        latest is not None
        and latest.payment_status in (GP.FAILED, GP.USER_DROPPED)
        and not _before_reopen(latest, p)
    ):
        to = Status.FAILED if latest.payment_status == GP.FAILED else Status.USER_DROPPED
        err = latest.error_details
        why = (err.error_description if err else None) or latest.payment_message
        await move(
            conn,
            p.id,
            to,
            reason=f"attempt {latest.cf_payment_id} {latest.payment_status.lower()} ({source})",
            failure_code=(err.error_code if err else None) or latest.payment_status,
            failure_reason=str(why)[:500] if why else None,
            payment_method=latest.method,
            payment_group=latest.payment_group,
        )
    final = await repo.get(conn, p.id)
    return final.status if final else p.status


def _before_reopen(attempt: GatewayPayment, p: Payment) -> bool:
    """An attempt that ended before the buyer chose to retry does not undo the retry."""
    if p.status is not Status.ACTIVE or p.retry_count == 0:
        return False
    ended = attempt.payment_completion_time or attempt.payment_time
    return ended is not None and ended <= p.updated_at


async def _flag_extra_successes(conn: AsyncConnection, p: Payment, truth: Truth) -> None:
    """Money taken twice for one order: credits are granted once; finance refunds the rest."""
    extra = [
        a.cf_payment_id
        for a in truth.payments
        if a.payment_status == GP.SUCCESS and a.cf_payment_id != p.cashfree_payment_id
    ]
    if extra and not await repo.has_fraud_event(conn, p.id, "multiple_successful_attempts"):
        await fraud.record(
            conn,
            "multiple_successful_attempts",
            severity="medium",
            payment_id=p.id,
            user_id=p.user_id,
            details={"credited": p.cashfree_payment_id, "extra_cf_payment_ids": extra},
        )


def _latest(attempts: list[GatewayPayment]) -> GatewayPayment | None:
    finished = [a for a in attempts if a.payment_status != GP.NOT_ATTEMPTED]
    if not finished:
        return None
    floor = datetime.min.replace(tzinfo=IST)
    return max(finished, key=lambda a: (a.payment_time or floor, a.cf_payment_id))


async def _announce_credit(conn: AsyncConnection, p: Payment) -> None:
    await outbox.send(
        conn,
        "wallet.credit",
        "payment.paid",
        {"payment_id": str(p.id)},
        correlation_id=str(p.id),
    )


async def verify_payment(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    payment_id: uuid.UUID,
    *,
    source: str,
) -> Status:
    """verifyPayment/syncPaymentStatus: ask Cashfree, then apply. Used by the HTTP sync
    route; the queue consumer does the same in two phases around its inbox transaction."""
    payment = await in_transaction(engine, lambda conn: _existing(conn, payment_id))
    truth = await fetch_truth(client, payment.order_id, payment.order_expires_at)
    return await in_transaction(
        engine, lambda conn: apply_truth(conn, settings, payment_id, truth, source=source)
    )


# --- retryFailedPayment ----------------------------------------------------------------


async def retry_failed_payment(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    principal: Principal,
    payment_id: uuid.UUID,
    key: str,
) -> Answer:
    """Another go at a payment that did not complete: on the same order while Cashfree still
    takes payments on it, else on a new order linked to the old one (`retry_of`)."""
    payment = await in_transaction(engine, lambda conn: _owned(conn, principal, payment_id))
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
    req = OrderRequest(
        pack_code=payment.pack_code,
        amount_paise=None if payment.pack_code else payment.amount_paise,
        customer_phone=payment.customer_phone or "",
        customer_email=payment.customer_email,
        buyer_state=payment.buyer_state,
    )
    return await create_payment_order(
        engine, client, settings, principal, req, f"retry:{payment.id}:{key}", retry_of=payment.id
    )


async def _buyer_state(conn: AsyncConnection, user_id: uuid.UUID) -> str | None:
    return (await users.get_user(conn, user_id)).state_code


async def _existing(conn: AsyncConnection, payment_id: uuid.UUID) -> Payment:
    payment = await repo.get(conn, payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id} does not exist")
    return payment


async def _owned(conn: AsyncConnection, principal: Principal, payment_id: uuid.UUID) -> Payment:
    payment = await _existing(conn, payment_id)
    await auth.authorize_retry(conn, principal, payment)
    return payment


async def get_payment(
    conn: AsyncConnection, principal: Principal, payment_id: uuid.UUID
) -> Payment:
    payment = await _existing(conn, payment_id)
    await auth.authorize_read(conn, principal, payment)
    return payment
