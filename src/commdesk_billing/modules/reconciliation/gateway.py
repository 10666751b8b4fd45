"""Gateway reconciliation: our captured payments and successful refunds (PG orders; a
mandate's charges are Cashfree Subscriptions', compared only when these reports name them)
against Cashfree's `/recon` (every payment and refund event in the window) and
`/settlement/recon` (the rows of each settlement made in it, which is how one event paid by
two settlements shows)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.db.sql import sql
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.split_models import ReconRow
from commdesk_billing.modules.reconciliation.matching import (
    OurPayment,
    OurRefund,
    Window,
    match,
)
from commdesk_billing.modules.reconciliation.model import SourceResult

# Cashfree's report dates and ours need not agree to the second (its event time is the
# capture, ours the moment we learned it): its reports are read this much wider.
REPORT_MARGIN = timedelta(days=1)
CAPTURED = ["PAID", "CREDITED", "REVIEW"]
SETTLEMENTS_PER_ASK = 50


async def _ours(
    conn: AsyncConnection,
    since: datetime,
    orders: list[str],
    payment_ids: list[str],
    refund_keys: list[str],
) -> tuple[list[OurPayment], list[OurRefund]]:
    """Captured PG payments and their successful refunds of the window, and any others,
    older or of a mandate, that Cashfree's rows name (matched, not called missing here; a
    mandate's are only compared when its rows name them: the Subscriptions side reports
    them apart)."""
    pays = await conn.execute(
        sql("""
        SELECT order_id, cashfree_payment_id, amount_paise, status, channel,
               coalesce(paid_at, updated_at) AS paid_at
          FROM payments
         WHERE status = ANY(CAST(:captured AS text[]))
           AND ((channel = 'order' AND coalesce(paid_at, updated_at) >= :since)
                OR order_id = ANY(CAST(:orders AS text[]))
                OR cashfree_payment_id = ANY(CAST(:pids AS text[])))"""),
        {"captured": CAPTURED, "since": since, "orders": orders, "pids": payment_ids},
    )
    refs = await conn.execute(
        sql("""
        SELECT r.refund_ref, r.cf_refund_id, r.order_id, r.amount_paise, p.channel,
               coalesce(r.processed_at, r.updated_at) AS processed_at
          FROM refunds r JOIN payments p ON p.id = r.payment_id
         WHERE r.status = 'SUCCESS'
           AND ((p.channel = 'order' AND coalesce(r.processed_at, r.updated_at) >= :since)
                OR r.refund_ref = ANY(CAST(:keys AS text[]))
                OR r.cf_refund_id = ANY(CAST(:keys AS text[])))"""),
        {"since": since, "keys": refund_keys},
    )
    return (
        [
            OurPayment(
                r.order_id,
                r.cashfree_payment_id,
                int(r.amount_paise),
                r.status,
                r.paid_at,
                on_order=r.channel == "order",
            )
            for r in pays
        ],
        [
            OurRefund(
                r.refund_ref,
                r.cf_refund_id,
                r.order_id,
                int(r.amount_paise),
                r.processed_at,
                on_order=r.channel == "order",
            )
            for r in refs
        ],
    )


async def reconcile(engine: AsyncEngine, client: CashfreeClient, window: Window) -> SourceResult:
    start, end = window.since - REPORT_MARGIN, window.now + REPORT_MARGIN
    events: list[ReconRow] = [r async for r in client.recon(start=start, end=end)]
    settlement_ids = [
        s.cf_settlement_id async for s in client.fetch_settlements(start=start, end=end)
    ]
    settled: list[ReconRow] = []
    # Asked a batch of settlements at a time: the filter is a list in one request body.
    for at in range(0, len(settlement_ids), SETTLEMENTS_PER_ASK):
        batch = settlement_ids[at : at + SETTLEMENTS_PER_ASK]
        settled += [r async for r in client.settlement_recon(settlement_ids=batch)]
    orders = sorted(
        {r.order_details.order_id for r in events + settled if r.order_details is not None}
    )
    payment_ids = sorted(
        {r.event_details.event_id for r in events if r.event_details.event_type == "PAYMENT"}
    )
    refund_keys = sorted(
        {r.event_details.event_id for r in events if r.event_details.event_type == "REFUND"}
        | {
            r.refund_details.refund_id
            for r in events
            if r.refund_details and r.refund_details.refund_id
        }
    )
    payments, refunds = await in_transaction(
        engine, lambda conn: _ours(conn, window.since, orders, payment_ids, refund_keys)
    )
    return match(payments, refunds, events, settled, window)
