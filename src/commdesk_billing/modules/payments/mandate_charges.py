"""Charges raised on a mandate (Cashfree Subscriptions, cashfree.md §12.5): a credit purchase
paid by a debit on the payer's UPI AutoPay or card mandate instead of at checkout.

The same path as an order (`ordering.py`): the payment row first, under the buyer's scoped
key (a system actor's deterministic key), then the CHARGE at Cashfree under our `order_id` as
its `payment_id` (Cashfree deduplicates by it: a repeat answers the first charge, a 409 is
answered by a fetch), then ACTIVE. Nothing is credited on Cashfree's answer or webhook: the
truth is its subscription payment API (`fetch_charge_truth`), applied by `apply_charge_truth`
through the same state machine; PAID announces `payment.paid`, and the crediting is the
purchase's (purchase lot + bonus + INR journal + invoice), unchanged.

India's rules (§12.5, §15): the charge is notified to the payer first (Cashfree sends the
pre-debit notice) and debited no earlier than 24 h after it and not before the schedule date,
which is T+1 when raised before 21:00 IST, else T+2. So a charge stays ACTIVE (pending) for a
day or more. A UPI charge that fails is retried by Cashfree (1 + 3 attempts); a FAILED it
reports is final for that charge.

This file opens the payment; `mandate_raise.py` makes the CHARGE call, `mandate_truth.py`
applies what Cashfree's subscription payment API says about it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    GatewayRejected,
    MandateAmountTooHigh,
)
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.payments import buyers
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.mandate_raise import raise_charge
from commdesk_billing.modules.payments.model import CREDIT_KINDS, Payment
from commdesk_billing.modules.payments.ordering import (
    Attach,
    Buyer,
    Charge,
    gst_columns,
    write_row,
)
from commdesk_billing.modules.payments.quotes import quote
from commdesk_billing.modules.payments.schemas import OrderRequest
from commdesk_billing.modules.payments.service import IST
from commdesk_billing.modules.payments.state import Status

# UPI AutoPay and card charges raised at or after 21:00 IST cannot be for the next day.
LATE_HOUR = 21
# The day is worked out on our clock, Cashfree judges it on its own when the request lands:
# a charge raised in the last minutes before 21:00 (network, retries, clock skew) would reach
# it after the cut-off and be refused for good. Those minutes count as late.
CUT_OFF_MARGIN = timedelta(minutes=15)
# How long a charge may stay open after its schedule date: the 24 h notice may push the debit
# a day past it, and UPI retries hourly three times. Past this, one Cashfree never heard of
# is written off (as an order past its expiry).
CHARGE_WINDOW = timedelta(days=3)


def earliest_schedule_date(now: datetime) -> date:
    """The earliest schedule date for a UPI/card charge raised at `now`: T+1 before 21:00 IST,
    else T+2 (§12.5); T+2 already from `CUT_OFF_MARGIN` before 21:00."""
    local = (now + CUT_OFF_MARGIN).astimezone(IST)
    return local.date() + timedelta(days=1 if local.hour < LATE_HOUR else 2)


def _request_hash(req: OrderRequest, subscription_id: str, schedule: date | None) -> str:
    """Of the request as the caller made it: a debit day left to the default is not part of
    it (the default moves with the clock; a repeat on another day is the same request and
    resumes the row, with the day the row holds)."""
    body = req.model_dump(mode="json") | {
        "subscription_id": subscription_id,
        "schedule_date": schedule.isoformat() if schedule else None,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def open_mandate_charge(
    engine: AsyncEngine,
    subs_client: SubscriptionsClient,
    settings: Settings,
    buyer: Buyer,
    req: OrderRequest,
    subscription_id: str,
    schedule: date | None = None,
    *,
    max_amount_paise: int | None = None,
    guard: Attach | None = None,
    now: datetime | None = None,
) -> Payment:
    """A credit purchase (a pack or a top-up, priced by `quotes`) charged on the mandate
    `subscription_id` (which must be ACTIVE at Cashfree). `schedule`: the debit date asked
    for, by default the earliest the rules allow. `max_amount_paise`: the mandate's maximum;
    a price above it is refused (`MandateAmountTooHigh`) and nothing is written. `guard`:
    called in the transaction that writes the payment row, only when it writes it (the
    caller's check that the mandate is still usable, under its lock; raising writes nothing).

    Idempotent by `buyer.scoped_key`: a repeat returns the payment the first call wrote and
    raises the charge only if that was not done. Raises `GatewayUnavailable` when Cashfree's
    answer was lost (the row stays CREATED: repeat, or the sync settles it) and
    `GatewayRejected` when Cashfree refused the charge (the payment is CANCELLED) or holds
    one under our id that differs from ours (the payment is in REVIEW). `now`: the moment
    the charge is raised (default: the clock)."""
    day = schedule or earliest_schedule_date(now or datetime.now(IST))

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
        if max_amount_paise is not None and q.gst.amount_paise > max_amount_paise:
            raise MandateAmountTooHigh(
                "the price is above the mandate's maximum per debit",
                amount_paise=q.gst.amount_paise,
                max_amount_paise=max_amount_paise,
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
            "metadata": {
                "requested_by": buyer.requested_by,
                **({"pack_name": q.pack.name} if q.pack else {}),
                **who.metadata(),
            },
            "channel": "mandate",
            "subscription_id": subscription_id,
            "schedule_date": day,
            "order_expires_at": datetime.combine(day, time(), IST) + CHARGE_WINDOW,
        }

    payment = await write_row(
        engine,
        settings,
        buyer,
        _request_hash(req, subscription_id, schedule),
        values,
        attach=guard,
        # Not a checkout: the member's unpaid orders do not hold up their mandate's charge
        # (and charges never count among those orders, `count_open_orders`).
        limit_open_orders=False,
    )
    if payment.status is Status.CREATED:
        await raise_charge(engine, subs_client, payment)
    elif payment.status is Status.CANCELLED and payment.paid_at is None:
        raise GatewayRejected(payment.failure_reason or "Cashfree refused this charge")
    elif payment.status is Status.REVIEW:
        raise GatewayRejected("the charge Cashfree holds does not match ours; under review")
    current = await in_transaction(engine, lambda conn: repo.get(conn, payment.id))
    assert current is not None
    return current


async def open_mandate_payment(
    engine: AsyncEngine,
    subs_client: SubscriptionsClient,
    settings: Settings,
    buyer: Buyer,
    charge: Charge,
    subscription_id: str,
    schedule: date | None = None,
    *,
    max_amount_paise: int | None = None,
    attach: Attach | None = None,
) -> Payment:
    """A payment that buys no credits (`charge`, e.g. an INR subscription period: the
    platform's own supply, its GST fixed by the caller through `tax.gst`) charged on the
    mandate `subscription_id`, by the same path as `open_mandate_charge`: row first under
    `buyer.scoped_key`, then the CHARGE at Cashfree under our order id, ACTIVE; PAID only on
    the subscription payment API's word (`apply_charge_truth`), then handed to the module
    that opened it at PAID → CREDITED (`crediting`, its handover given by `wiring`).

    `attach`: called in the payment row's transaction, only when it writes it (the caller's
    own row, and its check that the mandate is still usable under its lock; raising writes
    nothing). Raises as `open_mandate_charge` does."""
    if charge.kind in CREDIT_KINDS or charge.passthrough_paise != 0 or charge.splits:
        raise ValueError("a mandate payment is the platform's own supply and buys no credits")
    day = schedule or earliest_schedule_date(datetime.now(IST))
    amount = charge.gst.amount_paise
    if max_amount_paise is not None and amount > max_amount_paise:
        raise MandateAmountTooHigh(
            "the price is above the mandate's maximum per debit",
            amount_paise=amount,
            max_amount_paise=max_amount_paise,
        )
    canonical = json.dumps(
        {
            "kind": charge.kind,
            **charge.request,
            "subscription_id": subscription_id,
            # The request as the caller made it: a default day is not part of it, so a
            # repeat after a lost answer on another day resumes the same charge.
            "schedule_date": schedule.isoformat() if schedule else None,
        },
        sort_keys=True,
        separators=(",", ":"),
    )

    async def values(conn: AsyncConnection, user_id: uuid.UUID) -> dict[str, Any]:
        return {
            "kind": charge.kind,
            **gst_columns(charge.gst),
            "amount_paise": amount,
            "passthrough_paise": 0,
            "buyer_state": charge.buyer_state,
            "base_credits": 0,
            "bonus_credits": 0,
            "customer_phone": charge.customer_phone,
            "customer_email": charge.customer_email,
            "metadata": {"requested_by": buyer.requested_by, "about": charge.about},
            "channel": "mandate",
            "subscription_id": subscription_id,
            "schedule_date": day,
            "order_expires_at": datetime.combine(day, time(), IST) + CHARGE_WINDOW,
        }

    payment = await write_row(
        engine,
        settings,
        buyer,
        hashlib.sha256(canonical.encode()).hexdigest(),
        values,
        attach=attach,
        limit_open_orders=False,  # not a checkout (as `open_mandate_charge`)
    )
    if payment.status is Status.CREATED:
        await raise_charge(engine, subs_client, payment)
    elif payment.status is Status.CANCELLED and payment.paid_at is None:
        raise GatewayRejected(payment.failure_reason or "Cashfree refused this charge")
    current = await in_transaction(engine, lambda conn: repo.get(conn, payment.id))
    assert current is not None
    return current
