"""Payments: the seed's createPaymentOrder and createPaymentSession (`ordering`),
verifyPayment and syncPaymentStatus (`verification`), retryFailedPayment (`ordering`); this
file holds the reads, and what other modules may ask of a payment.

No database transaction is held open across a call to Cashfree. Opening an order is three
steps: (1) write the payment row (CREATED) under the caller's Idempotency-Key, (2) create the
order at Cashfree under our own order id, which Cashfree keeps unique (so repeating the call
after a crash or timeout cannot open a second order), (3) move the row to ACTIVE and store the
answer. A repeat of the request resumes at whichever step was not done.

Credits are never granted here: `verify_payment` moves a payment to PAID only on what
Cashfree's API says (never on a webhook's or browser's word), and sends `payment.paid`
in the same transaction; `crediting.credit_payment` grants.
"""

from __future__ import annotations

import uuid
from datetime import timedelta, timezone
from typing import Any

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import (
    NotFound,
)
from commdesk_billing.modules.payments import auth
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.schemas import PaymentOut
from commdesk_billing.security.jwt import Principal

log = structlog.get_logger(__name__)

IST = timezone(timedelta(hours=5, minutes=30))


def checkout_url(settings: Settings, p: Payment) -> str | None:
    if not settings.cashfree_checkout_url or not p.payment_session_id:
        return None
    return settings.cashfree_checkout_url.replace("{payment_session_id}", p.payment_session_id)


def describe(settings: Settings, p: Payment) -> dict[str, Any]:
    return PaymentOut.of(p, checkout_url(settings, p)).model_dump(mode="json")


async def existing(conn: AsyncConnection, payment_id: uuid.UUID) -> Payment:
    payment = await repo.get(conn, payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id} does not exist")
    return payment


async def get_payment(
    conn: AsyncConnection, principal: Principal, payment_id: uuid.UUID
) -> Payment:
    payment = await existing(conn, payment_id)
    await auth.authorize_read(conn, principal, payment)
    return payment


async def get(
    conn: AsyncConnection, payment_id: uuid.UUID, *, lock: bool = False
) -> Payment | None:
    """A payment, for other modules; `lock` takes its row (lock order: payment, then its
    wallet)."""
    return await repo.get(conn, payment_id, lock=lock)


async def by_order_id(conn: AsyncConnection, order_id: str) -> Payment | None:
    return await repo.by_order_id(conn, order_id)


async def order_facts(driver: asyncpg.Connection[Any], order_id: str) -> asyncpg.Record | None:
    """id, order_id, amount_paise, currency and order_expires_at of the order, or None: read
    on the driver by the webhook receiver's fast road (`webhooks.service._accept_first`)."""
    return await repo.order_facts(driver, order_id)


async def add_refunded(conn: AsyncConnection, payment_id: uuid.UUID, amount_paise: int) -> None:
    """A refund of this payment succeeded: add it to the payment's refunded total (the
    caller holds the payment's row lock)."""
    await repo.add_refunded(conn, payment_id, amount_paise)


async def raise_fraud_score(conn: AsyncConnection, payment_id: uuid.UUID, score: int) -> None:
    """Fraud scored the payment again once paid: keep the higher score on the row."""
    await repo.raise_fraud_score(conn, payment_id, score)


async def search(
    conn: AsyncConnection,
    *,
    order_id: str | None = None,
    user_id: uuid.UUID | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Payment]:
    """Staff's search (the finance console): newest first; the caller has checked the role."""
    return await repo.search(conn, order_id=order_id, user_id=user_id, status=status, limit=limit)


async def attempts_of(conn: AsyncConnection, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    """Cashfree's payment attempts of one order, oldest first, as last recorded."""
    return await repo.attempts_of(conn, payment_id)
