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
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    GatewayRejected,
    GatewayUnavailable,
    MandateAmountTooHigh,
    NotFound,
)
from commdesk_billing.gateway.errors import (
    CashfreeConflict,
    CashfreeError,
    CashfreeNotFound,
    CashfreeRejected,
)
from commdesk_billing.gateway.subscription_models import SubscriptionPayment
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.fraud import service as fraud
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import CREDIT_KINDS, Payment
from commdesk_billing.modules.payments.ordering import (
    Attach,
    Buyer,
    Charge,
    buyer_state_of,
    gst_columns,
    write_row,
)
from commdesk_billing.modules.payments.quotes import quote
from commdesk_billing.modules.payments.schemas import OrderRequest
from commdesk_billing.modules.payments.service import IST
from commdesk_billing.modules.payments.state import Status, move
from commdesk_billing.modules.payments.verification import announce_credit
from commdesk_billing.queues import outbox

log = structlog.get_logger(__name__)

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

# Cashfree's charge statuses (§12.4).
C_SUCCESS, C_FAILED, C_CANCELLED = "SUCCESS", "FAILED", "CANCELLED"


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
        buyer_state = (
            req.buyer_state or await buyer_state_of(conn, user_id) or settings.seller_state_code
        )
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
            "metadata": {"requested_by": buyer.requested_by},
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
        await _raise_charge(engine, subs_client, payment)
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
        await _raise_charge(engine, subs_client, payment)
    elif payment.status is Status.CANCELLED and payment.paid_at is None:
        raise GatewayRejected(payment.failure_reason or "Cashfree refused this charge")
    current = await in_transaction(engine, lambda conn: repo.get(conn, payment.id))
    assert current is not None
    return current


def _remarks(p: Payment) -> str:
    if p.buys_credits:
        return f"CommDesk credits {p.pack_code or 'top-up'}"[:60]
    return f"CommDesk {p.kind}"[:60]


async def _raise_charge(engine: AsyncEngine, client: SubscriptionsClient, p: Payment) -> None:
    assert p.subscription_id is not None and p.schedule_date is not None
    try:
        try:
            charge = await client.create_charge(
                subscription_id=p.subscription_id,
                payment_id=p.order_id,
                amount_paise=p.amount_paise,
                schedule_date=p.schedule_date,
                remarks=_remarks(p),
                # No key: our payment_id is the deduplication (a repeat with the same body
                # is answered with the first charge; a 409 is answered by a fetch).
            )
        except CashfreeConflict:
            charge = await client.fetch_payment(p.subscription_id, p.order_id)
    except CashfreeRejected as exc:
        if exc.status != 400:
            raise GatewayRejected(_why(exc), gateway_status=exc.status) from exc
        # Cashfree refused this request. After a lost answer (this is a repeat) the first
        # request may have made the charge (the payer notified, the debit coming): only a
        # charge Cashfree does not hold is cancelled; one it holds is adopted.
        found = await _held_charge(client, p)
        if found is None:
            await _cancel_refused(engine, p, exc)
            raise GatewayRejected(_why(exc), gateway_status=exc.status) from exc
        log.warning(
            "payments.mandate_charge.adopted_after_refusal",
            payment_id=str(p.id),
            code=(exc.code or "rejected")[:100],
        )
        charge = found
    except CashfreeError as exc:
        raise GatewayUnavailable(
            "Cashfree did not answer; repeat the charge with the same key", retry_after_s=5
        ) from exc

    async def activate(conn: AsyncConnection) -> bool:
        current = await repo.get(conn, p.id, lock=True)
        assert current is not None
        if current.status is Status.REVIEW:
            return False  # the sync or a webhook's look saw the mismatch first (recorded)
        if not _matches(charge, p):
            await fraud.record(
                conn,
                "charge_mismatch_at_create",
                severity="high",
                payment_id=p.id,
                user_id=p.user_id,
                details={"cashfree": charge.model_dump(mode="json")},
            )
            await move(conn, p.id, Status.REVIEW, reason="charge differs at Cashfree")
            return False
        if current.status is not Status.CREATED:
            # A concurrent call or the sync got there first (and may have seen the charge
            # end: a FAILED charge is final, never reopened by a late answer).
            return True
        await move(
            conn,
            p.id,
            Status.ACTIVE,
            reason="charge raised on the mandate",
            cashfree_order_id=charge.cf_payment_id,
        )
        return True

    if not await in_transaction(engine, activate):
        raise GatewayRejected("the charge Cashfree holds does not match ours; under review")


def _why(exc: CashfreeRejected) -> str:
    return f"{exc.code or 'rejected'}: {exc.message}"[:500]


async def _held_charge(client: SubscriptionsClient, p: Payment) -> SubscriptionPayment | None:
    """The charge Cashfree holds under our payment id, None when it holds none. Raises
    `GatewayUnavailable` when it cannot say (then nothing is decided: the row stays CREATED
    for a repeat or the sync)."""
    assert p.subscription_id is not None
    try:
        return await client.fetch_payment(p.subscription_id, p.order_id)
    except CashfreeNotFound:
        return None
    except CashfreeError as exc:
        raise GatewayUnavailable(
            "Cashfree refused the charge and could not say whether it holds one; repeat the "
            "charge with the same key",
            retry_after_s=5,
        ) from exc


async def _cancel_refused(engine: AsyncEngine, p: Payment, exc: CashfreeRejected) -> None:
    """Cashfree refused the charge itself (mandate not active, a date or amount it will not
    take) and holds none under our id: that charge will never exist."""

    async def refused(conn: AsyncConnection) -> None:
        # Only a row nobody has seen at Cashfree yet: a concurrent call may have raised it
        # (its answer, or the sync, moved the row on).
        current = await repo.get(conn, p.id, lock=True)
        if current is not None and current.status is Status.CREATED:
            await move(
                conn,
                p.id,
                Status.CANCELLED,
                reason="cashfree refused the charge",
                failure_code=exc.code or "gateway_rejected",
                failure_reason=_why(exc),
            )

    await in_transaction(engine, refused)


def _matches(charge: SubscriptionPayment, p: Payment) -> bool:
    """Cashfree's charge is ours: our id, our mandate, a CHARGE, our amount in exact paise."""
    return (
        charge.payment_id == p.order_id
        and (charge.subscription_id in (None, p.subscription_id))
        and (charge.payment_type in (None, "CHARGE"))
        and charge.payment_amount_paise == p.amount_paise
    )


# --- truth ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeTruth:
    """What Cashfree's subscription payment API says about a charge, fetched outside any
    transaction. `charge` None: Cashfree has no such charge."""

    charge: SubscriptionPayment | None


async def fetch_charge_truth(
    client: SubscriptionsClient, subscription_id: str, payment_id: str
) -> ChargeTruth:
    try:
        return ChargeTruth(await client.fetch_payment(subscription_id, payment_id))
    except CashfreeNotFound:
        return ChargeTruth(None)


async def apply_charge_truth(
    conn: AsyncConnection,
    settings: Settings,
    payment_id: uuid.UUID,
    truth: ChargeTruth,
    *,
    source: str,
) -> Status:
    """Move a mandate charge to where Cashfree's subscription payment API puts it: SUCCESS →
    PAID (announcing `payment.paid` in this transaction), FAILED → FAILED, CANCELLED →
    CANCELLED, INITIALIZED/PENDING → ACTIVE; an amount (in any status) or identity that
    differs → REVIEW."""
    p = await repo.get(conn, payment_id, lock=True)
    if p is None or not p.on_mandate:
        raise NotFound(f"mandate charge {payment_id} does not exist")
    await repo.mark_synced(conn, p.id)
    if p.status in (Status.PAID, Status.CREDITED, Status.REVIEW):
        if p.status is Status.PAID and source in ("sync", "manual"):
            await announce_credit(conn, p)  # heals a dead-lettered credit message
        return p.status
    charge = truth.charge
    if charge is None:
        if p.status is Status.CREATED and datetime.now(IST) > p.order_expires_at:
            left = await move(
                conn,
                p.id,
                Status.CANCELLED,
                reason="charge never reached cashfree",
                failure_code="charge_not_found",
                failure_reason="Cashfree has no such charge",
            )
            if left is not None:
                # Whoever raised it is waiting on it (a pending recharge, a renewal).
                await _announce_ended(conn, p, Status.CANCELLED, "charge_not_found")
        return (await repo.get(conn, p.id) or p).status
    identity_ok = (
        charge.payment_id == p.order_id
        and charge.subscription_id in (None, p.subscription_id)
        and charge.payment_type in (None, "CHARGE")
    )
    # Another amount under our id is a mismatch whatever the charge's status (the payer was
    # notified of, and will be debited, that amount); a SUCCESS must name ours exactly.
    amount_off = charge.payment_amount_paise != p.amount_paise and (
        charge.payment_status == C_SUCCESS or charge.payment_amount_paise is not None
    )
    if not identity_ok or amount_off:
        await fraud.record(
            conn,
            "charge_mismatch" if not identity_ok else "payment_amount_mismatch",
            severity="high",
            payment_id=p.id,
            user_id=p.user_id,
            details={"cashfree": charge.model_dump(mode="json"), "source": source},
        )
        await move(conn, p.id, Status.REVIEW, reason=f"charge differs at cashfree ({source})")
        return Status.REVIEW
    status = charge.payment_status
    if status == C_SUCCESS:
        moved = await move(
            conn,
            p.id,
            Status.PAID,
            reason=f"cashfree reports the mandate debit succeeded ({source})",
            cashfree_payment_id=charge.cf_payment_id,
            payment_method=charge.payment_method,
            payment_group="mandate",
            paid_at=datetime.now(IST),
            webhook_verified=source == "webhook",
            failure_code=None,
            failure_reason=None,
        )
        if moved is not None:
            paid = await repo.get(conn, p.id)
            assert paid is not None
            await announce_credit(conn, paid)
            return Status.PAID
        return p.status
    if p.status is Status.CREATED:
        await move(
            conn,
            p.id,
            Status.ACTIVE,
            reason=f"charge found at cashfree ({source})",
            cashfree_order_id=charge.cf_payment_id,
        )
    if status == C_FAILED:
        why = charge.failure_reason
        left = await move(
            conn,
            p.id,
            Status.FAILED,
            reason=f"mandate debit failed ({source})",
            failure_code=(why or C_FAILED)[:100],
            failure_reason=why[:500] if why else None,
            payment_method=charge.payment_method,
            payment_group="mandate",
        )
        if left is not None and left is not Status.FAILED:
            await _announce_ended(conn, p, Status.FAILED, why or C_FAILED)
    elif status == C_CANCELLED:
        left = await move(
            conn,
            p.id,
            Status.CANCELLED,
            reason=f"charge cancelled at cashfree ({source})",
            failure_code=(charge.failure_reason or C_CANCELLED)[:100],
            failure_reason=charge.failure_reason,
        )
        if left is not None:
            await _announce_ended(conn, p, Status.CANCELLED, charge.failure_reason or C_CANCELLED)
    # INITIALIZED / PENDING (notified, or a UPI retry pending): still open.
    final = await repo.get(conn, p.id)
    return final.status if final else p.status


async def _announce_ended(
    conn: AsyncConnection, p: Payment, status: Status, failure_code: str
) -> None:
    """`mandate_charge.failed`: a charge on a mandate ended unpaid (FAILED after Cashfree's
    retries, or CANCELLED), once, in the transaction that moved it. For whoever raised it
    (auto-recharge's backoff, renewals' dunning) and the member's notification. A charge that
    is paid is announced as every purchase is (`payment.credited`)."""
    await outbox.announce(
        conn,
        "mandate_charge.failed",
        {
            "payment_id": str(p.id),
            "user_id": str(p.user_id),
            "subscription_id": p.subscription_id,
            "order_id": p.order_id,
            "amount_paise": p.amount_paise,
            "status": status.value,
            "failure_code": failure_code[:100],
        },
        correlation_id=str(p.id),
    )


async def note_pre_debit_notice(conn: AsyncConnection, order_id: str, at: datetime) -> bool:
    """Record when Cashfree's pre-debit notice for the charge `order_id` was seen (its signed
    webhook): informational, no money moves on it. True when it was recorded now.

    The first notice announces `mandate_charge.notified` {payment_id, user_id,
    subscription_id, order_id, amount_paise, pdn_at, schedule_date} in this transaction,
    for whoever raised the charge (auto-recharge tells the member when the debit falls)."""
    if not await repo.set_pdn_at(conn, order_id, at):
        return False
    p = await repo.by_order_id(conn, order_id)
    if p is not None and p.pdn_at is not None:
        await outbox.announce(
            conn,
            "mandate_charge.notified",
            {
                "payment_id": str(p.id),
                "user_id": str(p.user_id),
                "subscription_id": p.subscription_id,
                "order_id": p.order_id,
                "amount_paise": p.amount_paise,
                "pdn_at": p.pdn_at.isoformat(),
                "schedule_date": p.schedule_date.isoformat() if p.schedule_date else None,
            },
            correlation_id=str(p.id),
        )
    return True


async def verify_charge(
    engine: AsyncEngine,
    client: SubscriptionsClient,
    settings: Settings,
    payment: Payment,
    *,
    source: str,
) -> Status:
    """Ask Cashfree about the charge now, then apply (the forced sync of a mandate charge)."""
    assert payment.subscription_id is not None
    truth = await fetch_charge_truth(client, payment.subscription_id, payment.order_id)
    return await in_transaction(
        engine, lambda conn: apply_charge_truth(conn, settings, payment.id, truth, source=source)
    )
