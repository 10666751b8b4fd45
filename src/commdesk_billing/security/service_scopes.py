"""Service tokens on every route: a service does only what its scopes allow.

A route another CommDesk service may call names the scope(s) it needs, in its decorator:
`@router.get(..., openapi_extra=for_services(Scope.wallets_read))` (any one of them is
enough). A route naming none is not for services: their tokens get 403 there, whatever
else they carry, before the route runs. The names are published in the OpenAPI document
(`x-service-scopes`), and the module's own `auth.py` rules still apply on top.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from commdesk_billing.errors import Forbidden
from commdesk_billing.security.jwt import Principal, Role, Scope

EXTENSION = "x-service-scopes"


def for_services(*scopes: Scope) -> dict[str, Any]:
    """The `openapi_extra` of a route services may call with any one of `scopes`."""
    if not scopes:
        raise ValueError("name at least one scope")
    return {EXTENSION: [s.value for s in scopes]}


def route_scopes(route: Any) -> frozenset[str]:
    """The scopes a route lets services in with (empty: services are refused)."""
    extra = getattr(route, "openapi_extra", None) or {}
    return frozenset(extra.get(EXTENSION, ()))


def authorize_service(request: Request, caller: Principal) -> None:
    if caller.role is not Role.service:
        return
    needed = route_scopes(request.scope.get("route"))
    if not needed:
        raise Forbidden("services may not call this route")
    if not needed & caller.scopes:
        raise Forbidden(f"a service needs one of these scopes here: {', '.join(sorted(needed))}")
