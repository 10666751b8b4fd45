"""One payment's story, gathered in one transaction from the modules that own each part
(their service and read functions, never their tables). Nothing here writes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.billing import events as billing_events
from commdesk_billing.modules.invoices import service as invoices
from commdesk_billing.modules.invoices.model import Invoice
from commdesk_billing.modules.ledger.reads import JournalLeg, journals_of_payment
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.refunds import reads as refunds
from commdesk_billing.modules.refunds.model import Refund
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.wallet import service as wallet
from commdesk_billing.modules.wallet.model import StatementLine
from commdesk_billing.modules.webhooks import service as webhooks
from commdesk_billing.security.jwt import Principal

# A payment has a handful of refunds at most (each at least ₹1 of what is left); this bounds
# a pathological one.
MAX_REFUNDS = 200


@dataclass(frozen=True)
class Journal:
    id: uuid.UUID
    kind: str
    description: str | None
    legs: list[JournalLeg]


@dataclass(frozen=True)
class PaymentStory:
    payment: Payment
    buyer: str  # the CommDesk subject of the buyer
    attempts: list[dict[str, Any]]
    webhooks: list[dict[str, Any]]
    journals: list[Journal]
    refunds: list[Refund]  # oldest first
    refundable_paise: int
    documents: list[Invoice]  # the tax invoice, then the credit notes
    events: list[dict[str, Any]]  # billing_events naming the payment, in order
    statement: list[StatementLine]  # the wallet lines the payment and its refunds wrote


def _grouped(legs: list[JournalLeg]) -> list[Journal]:
    journals: dict[uuid.UUID, Journal] = {}
    for leg in legs:
        journal = journals.setdefault(
            leg.journal_id, Journal(leg.journal_id, leg.kind, leg.description, [])
        )
        journal.legs.append(leg)
    return list(journals.values())


async def story_of(conn: AsyncConnection, caller: Principal, payment: Payment) -> PaymentStory:
    """The story of a payment the caller may read (the refunds' read checks again)."""
    found, refundable = await refunds.list_refunds(
        conn, caller, payment.id, limit=MAX_REFUNDS, before=None
    )
    oldest_first = list(reversed(found))
    refund_ids = [r.id for r in oldest_first]
    return PaymentStory(
        payment=payment,
        buyer=(await users.get_user(conn, payment.user_id)).external_id,
        attempts=await payments.attempts_of(conn, payment.id),
        webhooks=await webhooks.deliveries_for_order(conn, payment.order_id),
        journals=_grouped(await journals_of_payment(conn, payment.id)),
        refunds=oldest_first,
        refundable_paise=refundable,
        documents=await invoices.documents_of_payment(conn, payment.id, refund_ids),
        events=await billing_events.for_payment(conn, payment.id),
        statement=await wallet.lines_of_payment(conn, payment.id, refund_ids),
    )


async def payment_story(
    conn: AsyncConnection, caller: Principal, payment_id: uuid.UUID
) -> PaymentStory | None:
    """None when there is no such payment (the finance console: `caller` is staff)."""
    payment = await payments.get(conn, payment_id)
    if payment is None:
        return None
    return await story_of(conn, caller, payment)
