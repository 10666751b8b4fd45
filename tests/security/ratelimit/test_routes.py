"""Every route of the API is classed on purpose; a path no row matches falls back by method."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.security.ratelimit.routes import TABLE, Classifier, RouteClass


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, template) of every route the app serves, the undocumented ones included."""
    found: set[tuple[str, str]] = set()

    def add(route: Any) -> None:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add((method, route.path))

    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # a router included into the app (FastAPI ≥ 0.130)
            for ctx in contexts():
                add(ctx)
        else:
            add(route)
    for path, ops in app.openapi()["paths"].items():
        found |= {(m.upper(), path) for m in ops}
    return found


def _unclassed(app: FastAPI) -> set[tuple[str, str]]:
    return _routes(app) - set(TABLE)


def test_every_route_has_a_class() -> None:
    app = create_app(Settings())
    assert _unclassed(app) == set()
    # No row names a route that does not exist (a renamed route would keep a stale row).
    assert set(TABLE) - _routes(app) == set()


def test_a_route_without_a_row_is_found() -> None:
    app = create_app(Settings())

    @app.post("/v1/new-money-route")
    async def new() -> None:
        return None

    assert _unclassed(app) == {("POST", "/v1/new-money-route")}


def test_classification() -> None:
    c = Classifier()
    assert c.classify("POST", "/v1/payments/orders") == ("/v1/payments/orders", RouteClass.orders)
    assert c.classify("POST", "/v1/wallets/7f0c/debits") == (
        "/v1/wallets/{wallet_id}/debits",
        RouteClass.money,
    )
    assert c.classify("GET", "/v1/wallets/me") == ("/v1/wallets/me", RouteClass.reads)
    assert c.classify("HEAD", "/v1/wallets/7f0c") == ("/v1/wallets/{wallet_id}", RouteClass.reads)
    assert c.classify("POST", "/v1/webhooks/cashfree-payouts")[1] is RouteClass.webhooks
    assert c.classify("GET", "/metrics")[1] is RouteClass.exempt
    # No row: by method.
    assert c.classify("GET", "/v1/nothing/here") == (None, RouteClass.reads)
    assert c.classify("OPTIONS", "/v1/payments/orders") == (None, RouteClass.reads)
    assert c.classify("DELETE", "/v1/wallets/7f0c") == (None, RouteClass.money)
    assert c.classify("POST", "/v1/wallets/7f0c/debits/extra") == (None, RouteClass.money)


def test_the_openapi_document_names_the_429() -> None:
    paths = create_app(Settings()).openapi()["paths"]
    without = [
        f"{method.upper()} {path}"
        for path, ops in paths.items()
        for method, op in ops.items()
        if "RateLimit" not in op["responses"].get("429", {}).get("headers", {})
    ]
    assert sorted(without) == ["GET /healthz", "GET /readyz"]
    debit = paths["/v1/wallets/{wallet_id}/debits"]["post"]["responses"]["429"]
    assert set(debit["headers"]) == {"Retry-After", "RateLimit", "RateLimit-Policy"}
    assert "`money` class" in debit["description"]
    # A route's own 429 keeps its meaning, and gains the limiter's.
    orders = paths["/v1/payments/orders"]["post"]["responses"]["429"]["description"]
    own, _, limiter = orders.partition("; or: ")
    assert own.startswith("Too many unpaid orders") and "`too_many_open_orders`" in own
    assert limiter.startswith("Rate limit of the `orders` class")
