"""Who may do what with plans and subscriptions; role sets come from `security.roles`."""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.subscriptions.model import Subscription
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import MONEY_OPERATORS, PEOPLE, STAFF_READERS


def authorize_plan_admin(principal: Principal) -> None:
    if principal.role is not Role.finance_admin:
        raise Forbidden("only finance_admin may define subscription plans")


def authorize_subscribe(principal: Principal) -> None:
    """A subscription is paid from the caller's own wallet: people only."""
    if principal.role not in PEOPLE:
        raise Forbidden("services have no wallet to subscribe from")


def owns(principal: Principal, sub: Subscription) -> bool:
    return principal.role in PEOPLE and principal.sub == sub.user_ref


def authorize_read(principal: Principal, sub: Subscription) -> None:
    if principal.role in STAFF_READERS or owns(principal, sub):
        return
    raise Forbidden("not allowed to read this subscription")


def authorize_cancel(principal: Principal, sub: Subscription) -> None:
    """The member, or finance/support cancelling for them (the runbook)."""
    if principal.role in MONEY_OPERATORS or owns(principal, sub):
        return
    raise Forbidden("not allowed to cancel this subscription")


def authorize_change(principal: Principal, sub: Subscription) -> None:
    """A plan change may charge the wallet: its owner only."""
    if owns(principal, sub):
        return
    raise Forbidden("only the subscriber may change the plan")
