"""Prometheus metrics (text format at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "billing_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "billing_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WALLET_OPERATIONS = Counter(
    "billing_wallet_operations_total", "Wallet operations", ["operation", "outcome"]
)
IDEMPOTENT_REPLAYS = Counter(
    "billing_idempotent_replays_total", "Requests answered from a stored Idempotency-Key record"
)
LEDGER_VERIFY_FINDINGS = Counter(
    "billing_ledger_verify_findings_total", "Problems found by ledger verification", ["check"]
)
