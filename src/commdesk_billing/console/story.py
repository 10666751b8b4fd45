"""What the console shows of one payment, gathered in one read-only transaction: the
payment, its buyer, Cashfree's attempts, the webhooks received about its order, the ledger
journals naming it, its refunds (and what is refundable now), its tax invoice and credit
notes. Each part comes from the module that owns it; nothing here writes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.invoices import service as invoices
from commdesk_billing.modules.invoices.model import Invoice
from commdesk_billing.modules.ledger.reads import JournalLeg, journals_of_payment
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.refunds import reads as refunds
from commdesk_billing.modules.refunds.model import Refund
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.webhooks import service as webhooks
from commdesk_billing.security.jwt import Principal


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
    refunds: list[Refund]
    refundable_paise: int
    documents: list[Invoice]


def _grouped(legs: list[JournalLeg]) -> list[Journal]:
    journals: dict[uuid.UUID, Journal] = {}
    for leg in legs:
        journal = journals.setdefault(
            leg.journal_id, Journal(leg.journal_id, leg.kind, leg.description, [])
        )
        journal.legs.append(leg)
    return list(journals.values())


async def payment_story(
    conn: AsyncConnection, caller: Principal, payment_id: uuid.UUID
) -> PaymentStory | None:
    """None when there is no such payment. `caller` must be staff (the refunds' read
    checks the role again)."""
    payment = await payments.get(conn, payment_id)
    if payment is None:
        return None
    found, refundable = await refunds.list_refunds(conn, caller, payment_id, limit=200, before=None)
    oldest_first = list(reversed(found))
    return PaymentStory(
        payment=payment,
        buyer=(await users.get_user(conn, payment.user_id)).external_id,
        attempts=await payments.attempts_of(conn, payment_id),
        webhooks=await webhooks.deliveries_for_order(conn, payment.order_id),
        journals=_grouped(await journals_of_payment(conn, payment_id)),
        refunds=oldest_first,
        refundable_paise=refundable,
        documents=await invoices.documents_of_payment(
            conn, payment_id, [r.id for r in oldest_first]
        ),
    )
