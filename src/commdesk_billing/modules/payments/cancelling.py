"""A buyer cancelling an open order (`POST /v1/payments/{id}/cancel`).

Cancelling is asking Cashfree to terminate the order, then applying what Cashfree says
about it afterwards, through the same `apply_truth` as the webhook and the sync: the
answer to the terminate call is not trusted on its own, because an attempt already in
flight may still succeed. So:

- Cashfree terminated it: the payment is CANCELLED; its slot among the buyer's open orders
  is free.
- Cashfree has an attempt in flight (TERMINATION_REQUESTED): nothing is final; the answer
  is 202 with the payment still open, and the webhook or the sync ends it (CANCELLED, or
  PAID if the attempt succeeded: the buyer's money moved, so the credits are owed).
- Cashfree says it is already paid, or expired: that truth is applied instead (PAID,
  EXPIRED) and the answer says the payment could not be cancelled.
- Cashfree never had the order (our create call was lost): CANCELLED here. Should the
  order reach Cashfree after all and be paid, the state machine still moves it to PAID.

No Idempotency-Key: cancelling twice is cancelling once (the second call finds the payment
CANCELLED and answers it). Charges on a mandate are not orders and cannot be cancelled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import PaymentNotCancellable
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import (
    CashfreeNotFound,
    CashfreeRateLimited,
    CashfreeRejected,
)
from commdesk_billing.modules.payments import auth, service, verification
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.state import OPEN, Status, move
from commdesk_billing.security.jwt import Principal

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Cancellation:
    payment: Payment
    final: bool  # False: Cashfree is ending an attempt in flight; the payment is still open


async def cancel_order(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    caller: Principal,
    payment_id: uuid.UUID,
) -> Cancellation:
    async def check(conn: AsyncConnection) -> Payment:
        payment = await service.get_payment(conn, caller, payment_id)
        await auth.authorize_cancel(conn, caller, payment)
        return payment

    payment = await in_transaction(engine, check)
    if payment.status is Status.CANCELLED:
        return Cancellation(payment, final=True)
    if payment.on_mandate or payment.status not in OPEN:
        raise PaymentNotCancellable(
            f"payment is {payment.status.value}; only an open checkout order can be cancelled",
            details={"status": payment.status.value},
        )
    try:
        await client.terminate_order(payment.order_id)
    except CashfreeNotFound:
        pass  # never reached Cashfree: settled below
    except CashfreeRateLimited:
        raise  # the route answers 503 with Retry-After; nothing changed here
    except CashfreeRejected as exc:
        # "already paid" / "expired": the order's truth, fetched next, says which.
        log.info("payment.cancel.refused_by_cashfree", payment_id=str(payment_id), code=exc.code)
    truth = await verification.fetch_truth(client, payment.order_id, payment.order_expires_at)

    async def apply(conn: AsyncConnection) -> Payment:
        await verification.apply_truth(conn, settings, payment_id, truth, source="cancel")
        current = await service.existing(conn, payment_id)
        if truth.order is None and current.status is Status.CREATED:
            await move(
                conn,
                payment_id,
                Status.CANCELLED,
                reason="cancelled by the buyer; cashfree never had the order",
                failure_code="cancelled_by_buyer",
                failure_reason="Cancelled by the buyer",
            )
            current = await service.existing(conn, payment_id)
        return current

    after = await in_transaction(engine, apply)
    if after.status is Status.CANCELLED:
        log.info("payment.cancelled", payment_id=str(payment_id))
        return Cancellation(after, final=True)
    if after.status in OPEN:
        return Cancellation(after, final=False)
    raise PaymentNotCancellable(
        f"Cashfree reports the payment {after.status.value}; it was not cancelled",
        details={"status": after.status.value},
    )
