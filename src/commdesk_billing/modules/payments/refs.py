"""A payment named by the API: its id (a UUID) or our order id (what Cashfree's return URL
carries back to the frontend). Both shapes fit the order id's pattern; only the canonical
hyphenated UUID form is read as an id, and every order id we make is `cdb_` + hex, so no
order id is ever mistaken for an id."""

from __future__ import annotations

import re
import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import NotFound
from commdesk_billing.modules.payments import auth
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.security.jwt import Principal

# The order id's own rule (the CHECK on payments.order_id); a UUID fits it too.
REF_PATTERN = r"^[A-Za-z0-9_-]{3,45}$"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def as_id(ref: str) -> uuid.UUID | None:
    """The payment id `ref` spells, or None when it is an order id."""
    return uuid.UUID(ref) if _UUID.match(ref) else None


async def find(conn: AsyncConnection, ref: str) -> Payment | None:
    payment_id = as_id(ref)
    if payment_id is not None:
        return await repo.get(conn, payment_id)
    return await repo.by_order_id(conn, ref)


async def readable(conn: AsyncConnection, caller: Principal, ref: str) -> Payment:
    """The payment `ref` names, if the caller may read it (the buyer; STAFF_READERS):
    404 when there is none, 403 when it is someone else's (as by id, since ever)."""
    payment = await find(conn, ref)
    if payment is None:
        raise NotFound(f"payment {ref} does not exist")
    await auth.authorize_read(conn, caller, payment)
    return payment
