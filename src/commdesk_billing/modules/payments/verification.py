"""Verifying payments: what Cashfree says about an order (its webhook, the sync, a forced
look) is fetched from its API and applied to the payment by the state machine."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    NotFound,
)
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import (
    CashfreeNotFound,
)
from commdesk_billing.gateway.models import Order, OrderStatus
from commdesk_billing.gateway.models import Payment as GatewayPayment
from commdesk_billing.gateway.models import PaymentStatus as GP
from commdesk_billing.modules.fraud import service as fraud
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.ordering import order_matches
from commdesk_billing.modules.payments.service import IST, existing
from commdesk_billing.modules.payments.state import Status, move
from commdesk_billing.modules.payments.transitions import (
    heal_credit,
    hold_for_review,
    mark_paid,
)

log = structlog.get_logger(__name__)

# Past our own expiry, an order Cashfree still calls ACTIVE is terminated after this grace.
EXPIRY_GRACE = timedelta(seconds=60)

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
    # The row locked and marked synced in one statement (a checkout order's only).
    p = await repo.lock_for_sync(conn, payment_id)
    if p is None:
        mandate_charge = await repo.get(conn, payment_id, lock=True)
        if mandate_charge is None:
            raise NotFound(f"payment {payment_id} does not exist")
        # A charge on a mandate has no PG order: its truth is the subscription payment API
        # (`mandate_truth.apply_charge_truth`), never an order lookup.
        return mandate_charge.status
    order = truth.order
    if order is not None and order_matches(order, p):
        for attempt, raw in zip(truth.payments, truth.raw_payments, strict=True):
            await repo.upsert_attempt(conn, p.id, attempt, raw)
    if p.status in (Status.PAID, Status.CREDITED, Status.REVIEW):
        if p.status is not Status.REVIEW:
            await _flag_extra_successes(conn, p, truth)
        await heal_credit(conn, p, source)
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
    if not order_matches(order, p):
        await hold_for_review(
            conn,
            p,
            "order_mismatch",
            details={"cashfree_order": order.model_dump(mode="json"), "source": source},
            reason=f"order differs at cashfree ({source})",
        )
        return Status.REVIEW
    successes = [a for a in truth.payments if a.payment_status == GP.SUCCESS]
    good = [
        a
        for a in successes
        if a.payment_amount_paise == p.amount_paise and (a.payment_currency or "INR") == "INR"
    ]
    if successes and not good:
        await hold_for_review(
            conn,
            p,
            "payment_amount_mismatch",
            details={"attempts": truth.raw_payments, "source": source},
            reason="paid amount differs from the order",
        )
        return Status.REVIEW
    if good:
        win = good[0]
        paid = await mark_paid(
            conn,
            p,
            reason=f"cashfree reports success ({source})",
            source=source,
            cashfree_payment_id=win.cf_payment_id,
            payment_method=win.method,
            payment_group=win.payment_group,
            paid_at=win.payment_completion_time or win.payment_time or datetime.now(IST),
        )
        if paid is not None:
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
            error_reason=err.error_reason if err else None,
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
    if extra and not await fraud.has_event(conn, p.id, "multiple_successful_attempts"):
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
    payment = await in_transaction(engine, lambda conn: existing(conn, payment_id))
    truth = await fetch_truth(client, payment.order_id, payment.order_expires_at)
    return await in_transaction(
        engine, lambda conn: apply_truth(conn, settings, payment_id, truth, source=source)
    )
