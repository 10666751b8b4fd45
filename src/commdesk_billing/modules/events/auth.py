"""Who manages webhook endpoints and reads the public events.

Endpoints (create, change, delete, rotate a secret, read deliveries, replay): finance_admin,
and CommDesk services with the `webhooks:manage` scope (a service registers where it is
told). Endpoints belong to the deployment, not to one caller: any manager sees them all.
The events (`GET /v1/events`): finance_admin and the auditor, and services with
`events:read` (or `webhooks:manage`: whoever receives them may pull them). Support reads
neither: events carry every member's money facts, and support has the member's own views.
"""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.security.jwt import Principal, Role, Scope

_MANAGERS = frozenset({Role.finance_admin})
_READERS = frozenset({Role.finance_admin, Role.auditor})


def may_manage(caller: Principal) -> None:
    if caller.role in _MANAGERS:
        return
    if caller.role is Role.service and caller.has(Scope.webhooks_manage):
        return
    raise Forbidden("only finance_admin and services with webhooks:manage manage webhooks")


def may_read_events(caller: Principal) -> None:
    if caller.role in _READERS:
        return
    if caller.role is Role.service and (
        caller.has(Scope.events_read) or caller.has(Scope.webhooks_manage)
    ):
        return
    raise Forbidden("only finance_admin, auditor and services with events:read read events")
