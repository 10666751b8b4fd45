"""Reading refunds: for their callers over HTTP (with who-may-see rules) and for other
modules, which ask here rather than the table."""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import (
    NotFound,
)
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.refunds import auth
from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.modules.refunds.model import Refund
from commdesk_billing.modules.refunds.requesting import refundable_now
from commdesk_billing.modules.users import service as users
from commdesk_billing.security.jwt import Principal

log = structlog.get_logger(__name__)


async def get(conn: AsyncConnection, refund_id: uuid.UUID) -> Refund | None:
    return await repo.get(conn, refund_id)


async def by_ref(conn: AsyncConnection, refund_ref: str) -> Refund | None:
    """The refund of our own refund id (the one Cashfree echoes in its webhooks)."""
    return await repo.by_ref(conn, refund_ref)


async def get_refund(conn: AsyncConnection, caller: Principal, refund_id: uuid.UUID) -> Refund:
    refund = await repo.get(conn, refund_id)
    if refund is None:
        raise NotFound(f"refund {refund_id} does not exist")
    await _may_read(conn, caller, refund.payment_id)
    return refund


async def _may_read(conn: AsyncConnection, caller: Principal, payment_id: uuid.UUID) -> Payment:
    payment = await payments.get(conn, payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id} does not exist")
    buyer = await users.is_subject(conn, payment.user_id, caller.sub)
    auth.may_read(caller, payment, buyer=buyer)
    return payment


async def list_refunds(
    conn: AsyncConnection,
    caller: Principal,
    payment_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> tuple[list[Refund], int]:
    await _may_read(conn, caller, payment_id)
    rows = await repo.for_payment(conn, payment_id, limit=limit, before=before)
    return rows, await refundable_now(conn, payment_id)
