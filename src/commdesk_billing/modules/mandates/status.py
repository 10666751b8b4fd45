"""A mandate's status from Cashfree's API: applied to our row (never out of a final status),
each change announced as `mandate.status_changed` in its transaction; the member's pending
CANCEL sent before asking."""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import NotFound
from commdesk_billing.gateway.errors import CashfreeNotFound, CashfreeRejected
from commdesk_billing.gateway.subscription_models import Subscription
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import repository as repo
from commdesk_billing.modules.mandates.model import (
    FINAL,
    Mandate,
    MandateStatus,
    status_from_cashfree,
)
from commdesk_billing.modules.mandates.model import MandateStatus as M
from commdesk_billing.queues import outbox
from commdesk_billing.security.timestamps import IST

log = structlog.get_logger(__name__)

# Cashfree's statuses after which nothing more happens to a subscription.
_CASHFREE_ENDED = frozenset(
    {"CANCELLED", "CUSTOMER_CANCELLED", "COMPLETED", "EXPIRED", "LINK_EXPIRED", "CARD_EXPIRED"}
)


async def announce(conn: AsyncConnection, m: Mandate, status: MandateStatus) -> None:
    await outbox.announce(
        conn,
        "mandate.status_changed",
        {
            "mandate_id": str(m.id),
            "user_id": str(m.user_id),
            "status": status.value,
            "max_amount_paise": m.max_amount_paise,
        },
        correlation_id=str(m.id),
    )


async def existing(conn: AsyncConnection, mandate_id: uuid.UUID, *, lock: bool = False) -> Mandate:
    m = await repo.get(conn, mandate_id, lock=lock)
    if m is None:
        raise NotFound(f"mandate {mandate_id} does not exist")
    return m


async def apply_subscription(
    conn: AsyncConnection, mandate_id: uuid.UUID, sub: Subscription
) -> Mandate:
    """Record what Cashfree's API says about the mandate's subscription; move our status
    where it puts it (never out of revoked, expired or completed), announcing a change."""
    m = await existing(conn, mandate_id, lock=True)
    if sub.subscription_id != m.subscription_id:
        raise ValueError("a subscription applied to another mandate")
    details = sub.authorization_details
    auth_status = details.authorization_status if details else None
    columns: dict[str, object] = {
        "cashfree_status": sub.subscription_status[:50],
        "cf_subscription_id": sub.cf_subscription_id or m.cf_subscription_id,
        "session_id": sub.subscription_session_id or m.session_id,
        "auth_status": (auth_status or m.auth_status or "")[:50] or None,
        "refreshed_at": datetime.now(IST),
    }
    if details is not None and details.authorization_reference:
        columns["auth_reference"] = details.authorization_reference[:200]
    method = (details.payment_group or details.payment_method) if details else None
    if method:
        columns["payment_method"] = method[:30]
    new = status_from_cashfree(sub.subscription_status, auth_status)
    changed = new is not None and new is not m.status and m.status not in FINAL
    if changed:
        assert new is not None
        columns["status"] = new.value
    await repo.update(conn, m.id, **columns)
    if changed:
        assert new is not None
        await announce(conn, m, new)
        log.info("mandate.status_changed", mandate_id=str(m.id), to=new.value)
    return await existing(conn, m.id)


async def fetch_subscription(
    client: SubscriptionsClient, subscription_id: str, *, cancel: bool = False
) -> Subscription | None:
    """Cashfree's subscription (None: Cashfree has none). `cancel`: send the member's CANCEL
    first (refused when it is already over: then just read it)."""
    if cancel:
        try:
            await client.manage_subscription(subscription_id, "CANCEL")
        except CashfreeNotFound:
            return None
        except CashfreeRejected as exc:
            log.info("mandate.cancel_refused", code=exc.code)
    try:
        return await client.fetch_subscription(subscription_id)
    except CashfreeNotFound:
        return None


def needs_cancel(m: Mandate) -> bool:
    """Revoked by the member here while Cashfree may still hold it live."""
    return (
        m.status is M.REVOKED
        and m.revoked_by == "member"
        and (m.cashfree_status or "") not in _CASHFREE_ENDED
    )
