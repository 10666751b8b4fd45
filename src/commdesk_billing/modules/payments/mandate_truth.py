"""What Cashfree's subscription payment API says about a charge on a mandate, applied to
its payment through the state machine (`apply_charge_truth`): the sync, the webhooks' look
and a forced verify all go through here; and the pre-debit notice, recorded."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    NotFound,
)
from commdesk_billing.gateway.errors import (
    CashfreeNotFound,
)
from commdesk_billing.gateway.subscription_models import SubscriptionPayment
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.service import IST
from commdesk_billing.modules.payments.state import Status, move
from commdesk_billing.modules.payments.transitions import (
    heal_credit,
    hold_for_review,
    mark_paid,
)
from commdesk_billing.queues import outbox

# Cashfree's charge statuses (§12.4).
C_SUCCESS, C_FAILED, C_CANCELLED = "SUCCESS", "FAILED", "CANCELLED"


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
        await heal_credit(conn, p, source)
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
        await hold_for_review(
            conn,
            p,
            "charge_mismatch" if not identity_ok else "payment_amount_mismatch",
            details={"cashfree": charge.model_dump(mode="json"), "source": source},
            reason=f"charge differs at cashfree ({source})",
        )
        return Status.REVIEW
    status = charge.payment_status
    if status == C_SUCCESS:
        paid = await mark_paid(
            conn,
            p,
            reason=f"cashfree reports the mandate debit succeeded ({source})",
            source=source,
            cashfree_payment_id=charge.cf_payment_id,
            payment_method=charge.payment_method,
            payment_group="mandate",
            paid_at=datetime.now(IST),
        )
        if paid is not None:
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
