"""The authorization matrix (`tests/authz.py`) names every route of the API."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from commdesk_billing.security.jwt import Role, Scope
from commdesk_billing.security.service_scopes import EXTENSION
from tests.authz import (
    ANALYTICS_ALLOW,
    AUDIT_ALLOW,
    AUTO_RECHARGE_ALLOW,
    BILLING_PROFILE_ALLOW,
    COMMUNITY_ALLOW,
    EVENTS_ALLOW,
    FRAUD_ALLOW,
    MANDATE_ALLOW,
    PARTNER_ALLOW,
    PAYEE_ALLOW,
    PAYMENT_ALLOW,
    RECONCILIATION_ALLOW,
    REFUND_INVOICE_ALLOW,
    SERVICE_SCOPES,
    SETTLEMENT_ALLOW,
    SPLIT_VENDOR_ALLOW,
    SPONSORSHIP_ALLOW,
    SUBSCRIPTION_ALLOW,
    USAGE_ALLOW,
    WALLET_ALLOW,
)
from tests.conftest import auth


def test_the_matrix_names_every_route(app: Any) -> None:
    # Every documented /v1 operation must have a row here, so a new route cannot ship
    # without its authorization rule being tested.
    routes = {
        f"{method.upper()} {path}"
        for path, ops in app.openapi()["paths"].items()
        if path.startswith("/v1")
        for method in ops
    }
    # The webhook route authenticates by Cashfree's signature, not a token: tested apart.
    assert routes == set(WALLET_ALLOW) | set(PAYMENT_ALLOW) | set(REFUND_INVOICE_ALLOW) | set(
        COMMUNITY_ALLOW
    ) | set(PARTNER_ALLOW) | set(PAYEE_ALLOW) | set(SPONSORSHIP_ALLOW) | set(
        SETTLEMENT_ALLOW
    ) | set(SPLIT_VENDOR_ALLOW) | set(AUTO_RECHARGE_ALLOW) | set(USAGE_ALLOW) | set(
        SUBSCRIPTION_ALLOW
    ) | set(MANDATE_ALLOW) | set(AUDIT_ALLOW) | set(FRAUD_ALLOW) | set(RECONCILIATION_ALLOW) | set(
        ANALYTICS_ALLOW
    ) | set(BILLING_PROFILE_ALLOW) | set(EVENTS_ALLOW) | {
        "POST /v1/webhooks/cashfree",
        "POST /v1/webhooks/cashfree/subscriptions",
        "POST /v1/webhooks/cashfree-payouts",
        "POST /v1/webhooks/cashfree/vendor-settlements",
    }


def _operations(app: Any) -> dict[str, set[str]]:
    """Every `/v1` operation a token calls (the webhook routes authenticate by signature),
    with the scopes it publishes for services (`x-service-scopes`: what the check reads)."""
    return {
        f"{method.upper()} {path}": set(op.get(EXTENSION, ()))
        for path, ops in app.openapi()["paths"].items()
        if path.startswith("/v1") and "/webhooks/" not in path
        for method, op in ops.items()
    }


def test_each_route_names_the_scopes_that_let_services_in(app: Any) -> None:
    declared = _operations(app)
    assert len(declared) > 60
    assert {op: scopes for op, scopes in declared.items() if scopes} == SERVICE_SCOPES


async def test_a_service_token_gets_403_wherever_its_scopes_do_not_reach(
    app: Any, client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    """Every route against a service token with no scope, with every scope but the route's,
    and with the route's own: the first two are refused (403) before the route runs; the
    last gets past authorization (its answer is the route's: 200, 404 for a made-up id, 422
    for an empty body)."""
    everything = {s.value for s in Scope}
    operations = _operations(app)
    checked = 0
    for op in sorted(operations):
        method, path = op.split(" ", 1)
        url = re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)
        needed = SERVICE_SCOPES.get(op, set())
        callers: dict[str, tuple[list[str], int | None]] = {
            "none": ([], 403),
            "all_but": (sorted(everything - needed), 403),
        }
        for scope in needed:
            callers[scope] = ([scope], None)
        for name, (scopes, want) in callers.items():
            tok = token(Role.service, sub=f"svc-{name}", scopes=scopes)
            body = {} if method != "GET" else None
            r = await client.request(method, url, json=body, headers=auth(tok, "k-1"))
            if want is None:
                assert r.status_code not in (401, 403), (op, name, r.text)
            else:
                assert (r.status_code, r.json()["code"]) == (want, "forbidden"), (op, name, r.text)
            checked += 1
    assert checked >= 2 * len(operations) > 120
