"""Taking a subscription's money, and telling the member about it.

A credit-priced charge is a hold on the member's wallet captured at once, in the caller's
transaction (`wallet.service.lock_credits` + `capture_hold`): the capture consumes the
credits FIFO and recognizes their cost basis as revenue (DESIGN §10). Both wallet operations
and the `subscription_charges` row are keyed by the charge's operation key, so running the
same charge again (a racing job, a re-run after a crash, a retried transaction) changes
nothing and returns the first charge.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.billing import events as billing_events
from commdesk_billing.modules.subscriptions import repository as repo
from commdesk_billing.modules.subscriptions.model import Charge, Subscription
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.queues import outbox

# The hold lives only between its placement and its capture in the same transaction; the
# time to live only bounds what an interrupted one could keep locked.
HOLD_TTL_S = 300
PLACED_BY = "subscriptions"


def period_key(subscription_id: uuid.UUID, number: int) -> str:
    """The one operation key of a period's price: whoever charges period n uses it."""
    return f"subscription:{subscription_id}:period:{number}"


def upgrade_key(subscription_id: uuid.UUID, request_key: str) -> str:
    return f"subscription:{subscription_id}:upgrade:{request_key}"


async def charge_credits(
    conn: AsyncConnection,
    sub: Subscription,
    *,
    period_number: int,
    credits: int,
    operation_key: str,
    kind: str,
    reason: str,
    from_plan: str | None = None,
    to_plan: str | None = None,
) -> Charge:
    """Hold and capture `credits` from the subscriber's wallet, once per key. Raises
    `InsufficientCredits` (nothing written) when the wallet has too few."""
    if (done := await repo.find_charge(conn, operation_key)) is not None:
        return done
    meta = {"subscription_id": str(sub.id), "period": period_number, "kind": kind}
    held = await ws.lock_credits(
        conn,
        wallet_id=sub.wallet_id,
        credits=credits,
        idempotency_key=f"{operation_key}:hold",
        reason=reason,
        ttl_s=HOLD_TTL_S,
        metadata=meta,
        created_by=PLACED_BY,
    )
    assert held.hold is not None
    await ws.capture_hold(
        conn, hold_id=held.hold.id, idempotency_key=f"{operation_key}:capture", metadata=meta
    )
    charge = Charge(
        id=uuid.uuid4(),
        subscription_id=sub.id,
        period_number=period_number,
        kind=kind,
        credits=credits,
        operation_key=operation_key,
        hold_id=held.hold.id,
        from_plan=from_plan,
        to_plan=to_plan,
        created_at=held.line.created_at,
    )
    await repo.insert_charge(conn, charge)
    return charge


async def _log(
    conn: AsyncConnection, sub: Subscription, event: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """The event's body, written to the billing log (analytics, and the tests' witness: an
    announcement reaches no queue while nothing consumes it)."""
    body = {
        "subscription_id": str(sub.id),
        "user_id": str(sub.user_id),
        "user_ref": sub.user_ref,
        **payload,
    }
    await billing_events.record(
        conn, event, user_id=sub.user_id, credits=payload.get("price_credits"), data=body
    )
    return body


# The events for the member's notifications, each announced through the outbox in the
# transaction that made it true (one function per type: the routing test reads literals).
async def announce_renewed(
    conn: AsyncConnection, sub: Subscription, payload: dict[str, Any]
) -> None:
    body = await _log(conn, sub, "subscription.renewed", payload)
    await outbox.announce(conn, "subscription.renewed", body, correlation_id=str(sub.id))


async def announce_renewal_failed(
    conn: AsyncConnection, sub: Subscription, payload: dict[str, Any]
) -> None:
    body = await _log(conn, sub, "subscription.renewal_failed", payload)
    await outbox.announce(conn, "subscription.renewal_failed", body, correlation_id=str(sub.id))


async def announce_cancelled(
    conn: AsyncConnection, sub: Subscription, payload: dict[str, Any]
) -> None:
    body = await _log(conn, sub, "subscription.cancelled", payload)
    await outbox.announce(conn, "subscription.cancelled", body, correlation_id=str(sub.id))


def iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None
