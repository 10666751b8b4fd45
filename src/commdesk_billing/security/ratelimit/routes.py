"""Which limit a request falls under: its route class, by method and route template.

The table names every route of the API (`tests/security/ratelimit/test_routes.py` fails on
a route without a row), so a new route is classed on purpose. A path no row matches (a
route added without a row, a 404 probe) falls back by method: reads for GET, HEAD and
OPTIONS, money for any other method, the stricter class for writes.

Matching is done here, before routing, from the templates alone (Starlette's
`compile_path`): a refused request is answered before its body is read or its route's
dependencies run, and no framework internals are needed.
"""

from __future__ import annotations

import re
from enum import StrEnum

from starlette.routing import compile_path


class RouteClass(StrEnum):
    orders = "orders"  # opens a checkout at Cashfree: the costliest, the first to abuse
    money = "money"  # moves credits or money, or changes who gets paid
    webhooks = "webhooks"  # Cashfree's deliveries: limited only after the signature check
    reads = "reads"
    exempt = "exempt"  # probes and scrapes of our own infrastructure


_O, _M, _W, _R, _X = (
    RouteClass.orders,
    RouteClass.money,
    RouteClass.webhooks,
    RouteClass.reads,
    RouteClass.exempt,
)

# (method, template) -> class. GET rows cover HEAD too.
TABLE: dict[tuple[str, str], RouteClass] = {
    # Checkout-opening routes.
    ("POST", "/v1/payments/orders"): _O,
    ("POST", "/v1/payments/{payment_id}/retry"): _O,
    ("POST", "/v1/payments/{payment_id}/cancel"): _O,
    ("POST", "/v1/sponsorships"): _O,
    ("POST", "/v1/mandates"): _O,
    ("POST", "/v1/subscriptions"): _O,
    # Money-moving and other writes.
    ("POST", "/v1/wallets/{wallet_id}/debits"): _M,
    ("POST", "/v1/wallets/{wallet_id}/grants"): _M,
    ("POST", "/v1/wallets/{wallet_id}/holds"): _M,
    ("POST", "/v1/holds/{hold_id}/capture"): _M,
    ("POST", "/v1/holds/{hold_id}/release"): _M,
    ("PUT", "/v1/wallets/{wallet_id}/auto-recharge"): _M,
    ("POST", "/v1/communities/{community_id}/spends"): _M,
    ("POST", "/v1/community-spends/{spend_id}/reversal"): _M,
    ("PUT", "/v1/communities/{community_id}/fee-plan"): _M,
    ("POST", "/v1/communities/{community_id}/split-vendor"): _M,
    ("POST", "/v1/payments/{payment_id}/refunds"): _M,
    ("POST", "/v1/payments/{payment_id}/sync"): _M,
    ("POST", "/v1/usage/events"): _M,
    ("POST", "/v1/usage/price-book"): _M,
    ("POST", "/v1/mandates/{mandate_id}/revoke"): _M,
    ("POST", "/v1/subscription-plans"): _M,
    ("POST", "/v1/subscriptions/{subscription_id}/cancel"): _M,
    ("POST", "/v1/subscriptions/{subscription_id}/change"): _M,
    ("POST", "/v1/sponsorships/{sponsorship_id}/milestones/{seq}/deliver"): _M,
    ("POST", "/v1/sponsorships/{sponsorship_id}/milestones/{seq}/release"): _M,
    ("POST", "/v1/partners"): _M,
    ("PUT", "/v1/partners/{partner_id}"): _M,
    ("POST", "/v1/partners/{partner_id}/attributions"): _M,
    ("POST", "/v1/payees"): _M,
    ("PUT", "/v1/payees/{payee_id}/payout-account"): _M,
    ("POST", "/v1/payees/{payee_id}/reactivate"): _M,
    ("POST", "/v1/payees/{payee_id}/suspend"): _M,
    ("POST", "/v1/settlements/runs"): _M,
    ("POST", "/v1/fraud/reviews/{review_id}/decision"): _M,
    ("POST", "/v1/fraud/lists"): _M,
    ("DELETE", "/v1/fraud/lists/{entry_id}"): _M,
    # Reconciliation: a finding explained or resolved is a finance decision on the books.
    ("POST", "/v1/reconciliation/findings/{finding_id}/explain"): _M,
    ("POST", "/v1/reconciliation/findings/{finding_id}/resolve"): _M,
    # Cashfree's webhooks (PG, Subscriptions, Payouts, Easy Split).
    ("POST", "/v1/webhooks/cashfree"): _W,
    ("POST", "/v1/webhooks/cashfree/subscriptions"): _W,
    ("POST", "/v1/webhooks/cashfree-payouts"): _W,
    ("POST", "/v1/webhooks/cashfree/vendor-settlements"): _W,
    # Reads.
    ("GET", "/v1/wallets/me"): _R,
    ("GET", "/v1/wallets/{wallet_id}"): _R,
    ("GET", "/v1/wallets/{wallet_id}/transactions"): _R,
    ("GET", "/v1/wallets/{wallet_id}/auto-recharge"): _R,
    ("GET", "/v1/wallets/{wallet_id}/auto-recharge/events"): _R,
    ("GET", "/v1/holds/{hold_id}"): _R,
    ("GET", "/v1/communities/{community_id}/earnings"): _R,
    ("GET", "/v1/communities/{community_id}/fee-plan"): _R,
    ("GET", "/v1/communities/{community_id}/spends"): _R,
    ("GET", "/v1/communities/{community_id}/split-vendor"): _R,
    ("GET", "/v1/communities/{community_id}/sponsorships"): _R,
    ("GET", "/v1/community-spends/{spend_id}"): _R,
    ("GET", "/v1/invoices"): _R,
    ("GET", "/v1/invoices/{invoice_id}"): _R,
    ("GET", "/v1/invoices/{invoice_id}/pdf"): _R,
    ("GET", "/v1/mandates"): _R,
    ("GET", "/v1/mandates/{mandate_id}"): _R,
    ("GET", "/v1/packs"): _R,
    ("GET", "/v1/billing-profile"): _R,
    ("PUT", "/v1/billing-profile"): _R,
    ("GET", "/v1/partners/{partner_id}/earnings"): _R,
    ("GET", "/v1/payees"): _R,
    ("GET", "/v1/payees/{payee_id}"): _R,
    ("GET", "/v1/payees/{payee_id}/payout-account"): _R,
    ("GET", "/v1/payees/{payee_id}/settlements"): _R,
    ("GET", "/v1/payments"): _R,
    ("GET", "/v1/payments/{payment_id}"): _R,
    ("GET", "/v1/payments/{payment_id}/timeline"): _R,
    ("GET", "/v1/payments/{payment_id}/refunds"): _R,
    ("GET", "/v1/refunds/{refund_id}"): _R,
    ("GET", "/v1/settlements/{settlement_id}"): _R,
    ("GET", "/v1/settlements/{settlement_id}/statement"): _R,
    ("GET", "/v1/sponsorships"): _R,
    ("GET", "/v1/sponsorships/{sponsorship_id}"): _R,
    ("GET", "/v1/subscription-plans"): _R,
    ("GET", "/v1/subscriptions"): _R,
    ("GET", "/v1/subscriptions/{subscription_id}"): _R,
    ("GET", "/v1/usage/price-book"): _R,
    ("GET", "/v1/usage/summary"): _R,
    ("GET", "/docs"): _R,
    ("GET", "/docs/swagger-init.js"): _R,
    ("GET", "/docs/assets/{name}"): _R,
    ("GET", "/v1/audit-logs"): _R,
    ("GET", "/v1/fraud/reviews"): _R,
    ("GET", "/v1/fraud/profiles/{user_id}"): _R,
    ("GET", "/v1/fraud/lists"): _R,
    ("GET", "/v1/reconciliation/findings"): _R,
    ("GET", "/v1/reconciliation/findings/{finding_id}"): _R,
    ("GET", "/v1/analytics/summary"): _R,
    ("GET", "/v1/analytics/daily"): _R,
    ("GET", "/v1/analytics/payments"): _R,
    ("GET", "/v1/analytics/trial-balance"): _R,
    ("GET", "/v1/analytics/gst-summary"): _R,
    # Events out: endpoint changes are writes (where billing sends money facts); the
    # delivery log and the events are reads.
    ("POST", "/v1/webhook-endpoints"): _M,
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): _M,
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): _M,
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): _M,
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay"): _M,
    ("GET", "/v1/webhook-endpoints"): _R,
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): _R,
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): _R,
    ("GET", "/v1/events"): _R,
    ("GET", "/v1/events/{event_id}"): _R,
    ("GET", "/openapi.json"): _R,
    ("GET", "/redoc"): _R,
    # The finance console (console/): its forms as writes (sign-in has its own per-account
    # limit on top, console/throttle.py), its pages as reads.
    ("POST", "/console/sign-in"): _M,
    ("POST", "/console/sign-out"): _M,
    ("POST", "/console/payments/{payment_id}/refunds"): _M,
    ("POST", "/console/reviews/{review_id}/decision"): _M,
    ("POST", "/console/dead-letters/{queue}/{message_id}/replay"): _M,
    ("POST", "/console/findings/{finding_id}/explain"): _M,
    ("POST", "/console/findings/{finding_id}/resolve"): _M,
    ("GET", "/console"): _R,
    ("GET", "/console/sign-in"): _R,
    ("GET", "/console/payments"): _R,
    ("GET", "/console/payments/{payment_id}"): _R,
    ("GET", "/console/reviews"): _R,
    ("GET", "/console/settlements"): _R,
    ("GET", "/console/dead-letters"): _R,
    ("GET", "/console/dead-letters/{queue}/{message_id}"): _R,
    ("GET", "/console/findings"): _R,
    ("GET", "/console/findings/{finding_id}"): _R,
    ("GET", "/console/analytics"): _R,
    ("GET", "/console/analytics/{report}.csv"): _R,
    # Probes (the orchestrator) and scrapes (Prometheus): never limited, they come often
    # from one address and must keep working while we are under load.
    ("GET", "/healthz"): _X,
    ("GET", "/readyz"): _X,
    ("GET", "/metrics"): _X,
}

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Classifier:
    """(method, path) -> (template or None, class). Paths without parameters are one dict
    lookup; the others are tried in table order, grouped by their first segment."""

    def __init__(self, table: dict[tuple[str, str], RouteClass] = TABLE) -> None:
        self._static: dict[tuple[str, str], tuple[str, RouteClass]] = {}
        self._dynamic: dict[str, list[tuple[str, re.Pattern[str], str, RouteClass]]] = {}
        for (method, template), cls in table.items():
            if "{" not in template:
                self._static[(method, template)] = (template, cls)
                continue
            regex, _fmt, _conv = compile_path(template)
            self._dynamic.setdefault(_head(template), []).append((method, regex, template, cls))

    def classify(self, method: str, path: str) -> tuple[str | None, RouteClass]:
        looked_up = "GET" if method == "HEAD" else method
        hit = self._static.get((looked_up, path))
        if hit is not None:
            return hit
        for row_method, regex, template, cls in self._dynamic.get(_head(path), ()):
            if row_method == looked_up and regex.match(path):
                return template, cls
        return None, RouteClass.reads if method in _READ_METHODS else RouteClass.money


def _head(path: str) -> str:
    # "/v1/wallets/…" -> "/v1/wallets": the first two segments, where no parameter sits.
    parts = path.split("/", 3)
    return "/".join(parts[:3])
