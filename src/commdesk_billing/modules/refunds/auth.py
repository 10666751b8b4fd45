"""Who may refund, and who may see refunds (DESIGN §7); role sets from `security.roles`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from commdesk_billing.config import Settings
from commdesk_billing.errors import Forbidden, NotFound
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import MONEY_OPERATORS, PEOPLE, STAFF_READERS


def may_see_payment(caller: Principal, payment: Payment, *, buyer: bool) -> None:
    """Before anything is locked: someone else's payment is not found, unless the caller is
    staff who may look but not refund (told so)."""
    if caller.role in MONEY_OPERATORS or buyer:
        return
    if caller.role in (Role.auditor, Role.service):
        raise Forbidden("only finance_admin or support may refund a payment")
    raise NotFound(f"payment {payment.id} does not exist")


def authorize_refund(settings: Settings, caller: Principal, payment: Payment, buyer: bool) -> None:
    if caller.role in MONEY_OPERATORS:
        return
    if caller.role is Role.member and buyer and settings.refund_self_service_days > 0:
        window = timedelta(days=settings.refund_self_service_days)
        if payment.credited_at and datetime.now(UTC) - payment.credited_at <= window:
            return
        raise Forbidden(
            f"purchases can be refunded by their buyer within "
            f"{settings.refund_self_service_days} days; ask support"
        )
    raise Forbidden("only finance_admin or support may refund this payment")


def authorize_sponsorship_refund(caller: Principal) -> None:
    if caller.role is not Role.finance_admin:
        raise Forbidden("only finance_admin refunds a sponsorship")


def may_read(caller: Principal, payment: Payment, *, buyer: bool) -> None:
    if caller.role in STAFF_READERS or (caller.role in PEOPLE and buyer):
        return
    # Not the caller's: say nothing about whether it exists.
    raise NotFound(f"payment {payment.id} does not exist")


def staff_view(caller: Principal) -> bool:
    """Staff see the refund's internal fields (who asked, Cashfree's ids)."""
    return caller.role in STAFF_READERS


def authorize_subscription_refund(caller: Principal) -> None:
    # Service revenue, not a wallet's credits: finance's call, as a sponsorship's.
    if caller.role is not Role.finance_admin:
        raise Forbidden("only finance_admin refunds a subscription payment")
