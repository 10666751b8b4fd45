"""Raising an INR subscription's charge on the member's mandate: what a period's charge
(`inr.py`) and an upgrade's prorated charge (`inr_change.py`) do alike.

Both are payments of kind `subscription`, GST inclusive (the member is debited exactly the
price the pre-debit notice announced), raised with no transaction held across Cashfree and
attached to the row that asked for them (an attempt, a plan change) in the transaction that
writes the payment. What each does with a refusal stays with its caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    DomainError,
    GatewayRejected,
    MandateAmountTooHigh,
    MandateNotActive,
)
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments import buyers
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.mandate_charges import earliest_schedule_date
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.ordering import Charge
from commdesk_billing.modules.payments.state import Status as PaymentStatus
from commdesk_billing.modules.tax.gst import compute

log = structlog.get_logger(__name__)

KIND = "subscription"  # the payments' kind of an INR subscription's payment
ACTOR = "subscriptions"
# A payment that ended unpaid: the attempt (or change) it was raised for failed.
UNPAID = frozenset({PaymentStatus.FAILED, PaymentStatus.CANCELLED, PaymentStatus.EXPIRED})


async def charge(
    conn: AsyncConnection,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    mandate_id: uuid.UUID,
    price_paise: int,
    about: str,
    request: dict[str, Any],
) -> Charge:
    """The payment to raise for `price_paise` on the member's mandate."""
    mandate = await mandates.usable(conn, mandate_id, user_id)
    # The place of supply as for a purchase: a GSTIN on the billing profile fixes it.
    state = (await buyers.resolve(conn, settings, user_id, None)).state_code
    # The same split as a period's price: the amount debited is GST inclusive.
    gst = compute(
        price_paise,
        rate_bp=settings.gst_rate_bp,
        mode="inclusive",
        buyer_state=state,
        seller_state=settings.seller_state_code,
    )
    return Charge(
        kind=KIND,
        gst=gst,
        passthrough_paise=0,
        customer_phone=mandate.customer_phone if mandate else "",
        customer_email=None,
        buyer_state=state,
        about=about[:200],
        request=request,
    )


async def raise_on_mandate(
    engine: AsyncEngine,
    client: SubscriptionsClient,
    settings: Settings,
    charge: Charge,
    *,
    mandate_id: uuid.UUID,
    key: str,
    at: datetime,
    attach: Callable[[AsyncConnection, Payment], Awaitable[None]],
    refused: Callable[[AsyncConnection, str], Awaitable[None]],
    deferred_event: str,
    subscription_id: uuid.UUID,
) -> bool:
    """Raise `charge` on the mandate under `key` (Cashfree deduplicates by our payment id).
    False: refused for good (the mandate not usable, the amount above its maximum, Cashfree
    rejecting it), after `refused(conn, reason)` ran in a transaction of its own. True: raised,
    or Cashfree away (logged as `deferred_event`): the next run repeats under the same key."""
    try:
        await mandates.charge_for(
            engine,
            client,
            settings,
            mandate_id,
            charge,
            key=key,
            actor=ACTOR,
            schedule=earliest_schedule_date(at),
            attach=attach,
        )
    except (MandateNotActive, MandateAmountTooHigh, GatewayRejected) as exc:
        reason = f"{exc.code}: {exc}"
        await in_transaction(engine, lambda c: refused(c, reason))
        return False
    except DomainError as exc:  # Cashfree away, too many open orders: the next run repeats
        log.warning(deferred_event, subscription_id=str(subscription_id), code=exc.code)
    return True


async def lives_on(conn: AsyncConnection, payment_id: uuid.UUID | None) -> bool:
    """After a refusal: does the payment already attached (if any) still live (in review,
    or paid)? Then its outcome decides, not the refusal."""
    if payment_id is None:
        return False
    p = await payments.get(conn, payment_id)
    return p is not None and p.status not in UNPAID


async def in_review(conn: AsyncConnection, payment_id: uuid.UUID) -> bool:
    """Is the payment held for review (Cashfree holds another charge under our id)? Nothing
    moves it on from there: it is never credited by the payments' state machine."""
    p = await payments.get(conn, payment_id)
    return p is not None and p.status is PaymentStatus.REVIEW


async def unpaid_reason(conn: AsyncConnection, payment_id: uuid.UUID) -> str | None:
    """The failure of a raised charge whose payment ended unpaid; None while it may still
    be paid (or no row is seen yet)."""
    p = await payments.get(conn, payment_id)
    if p is None or p.status not in UNPAID:
        return None
    return f"payment {p.status.value.lower()}: {p.failure_code or 'unpaid'}"
