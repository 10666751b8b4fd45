"""The CHARGE call on a mandate for a payment row `mandate_charges.py` wrote (CREATED):
Cashfree's answer moves the row to ACTIVE, a charge that differs from ours to REVIEW, and
a refusal (a 400) to CANCELLED only when Cashfree holds no charge under our payment id."""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    GatewayRejected,
    GatewayUnavailable,
)
from commdesk_billing.gateway.errors import (
    CashfreeConflict,
    CashfreeError,
    CashfreeNotFound,
    CashfreeRejected,
)
from commdesk_billing.gateway.subscription_models import SubscriptionPayment
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.state import Status, move
from commdesk_billing.modules.payments.transitions import cancel_refused, hold_for_review

log = structlog.get_logger(__name__)


def _remarks(p: Payment) -> str:
    if p.buys_credits:
        return f"CommDesk credits {p.pack_code or 'top-up'}"[:60]
    return f"CommDesk {p.kind}"[:60]


async def raise_charge(engine: AsyncEngine, client: SubscriptionsClient, p: Payment) -> None:
    """Raise the CHARGE for the payment `p` (CREATED) and move it on by the answer; raises
    `GatewayUnavailable` when the outcome is unknown (the row stays CREATED: repeat, or
    the sync settles it) and `GatewayRejected` when refused or held for review."""
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
            await hold_for_review(
                conn,
                p,
                "charge_mismatch_at_create",
                details={"cashfree": charge.model_dump(mode="json")},
                reason="charge differs at Cashfree",
            )
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

    await in_transaction(
        engine,
        lambda conn: cancel_refused(
            conn,
            p.id,
            reason="cashfree refused the charge",
            failure_code=exc.code or "gateway_rejected",
            failure_reason=_why(exc),
        ),
    )


def _matches(charge: SubscriptionPayment, p: Payment) -> bool:
    """Cashfree's charge is ours: our id, our mandate, a CHARGE, our amount in exact paise."""
    return (
        charge.payment_id == p.order_id
        and (charge.subscription_id in (None, p.subscription_id))
        and (charge.payment_type in (None, "CHARGE"))
        and charge.payment_amount_paise == p.amount_paise
    )
