"""Who may read tax documents (DESIGN §7); role sets come from `security.roles`."""

from __future__ import annotations

from commdesk_billing.errors import Forbidden, NotFound
from commdesk_billing.modules.invoices.model import Invoice
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import FINANCE_READERS, PEOPLE


def reads_everyone(caller: Principal) -> bool:
    return caller.role in FINANCE_READERS


def may_list(caller: Principal) -> None:
    """Listing is for buyers (their own) and finance; support and services get no tax
    documents at all."""
    if caller.role in (Role.service, Role.support):
        raise Forbidden("invoices are read by their buyer, finance_admin and auditor")


def may_read(caller: Principal, invoice: Invoice, *, buyer: bool) -> None:
    if reads_everyone(caller) or (caller.role in PEOPLE and buyer):
        return
    raise NotFound(f"invoice {invoice.id} does not exist")
