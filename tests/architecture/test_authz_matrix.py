"""The authorization matrix (`tests/authz.py`) names every route of the API."""

from __future__ import annotations

from typing import Any

from tests.authz import (
    AUTO_RECHARGE_ALLOW,
    COMMUNITY_ALLOW,
    FRAUD_ALLOW,
    MANDATE_ALLOW,
    PARTNER_ALLOW,
    PAYEE_ALLOW,
    PAYMENT_ALLOW,
    REFUND_INVOICE_ALLOW,
    SETTLEMENT_ALLOW,
    SPLIT_VENDOR_ALLOW,
    SPONSORSHIP_ALLOW,
    SUBSCRIPTION_ALLOW,
    USAGE_ALLOW,
    WALLET_ALLOW,
)


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
    ) | set(MANDATE_ALLOW) | set(FRAUD_ALLOW) | {
        "POST /v1/webhooks/cashfree",
        "POST /v1/webhooks/cashfree/subscriptions",
        "POST /v1/webhooks/cashfree-payouts",
        "POST /v1/webhooks/cashfree/vendor-settlements",
    }
