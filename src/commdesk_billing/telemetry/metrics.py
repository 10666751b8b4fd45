"""Prometheus metrics (text format at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
# operation: spend | reversal. Bounded: no community id in a label (there may be thousands).
COMMUNITY_SPENDS = Counter(
    "billing_community_spends_total", "Community spends and reversals applied", ["operation"]
)
IDEMPOTENT_REPLAYS = Counter(
    "billing_idempotent_replays_total", "Requests answered from a stored Idempotency-Key record"
)
DB_UNAVAILABLE = Counter(
    "billing_db_unavailable_total",
    "Transactions given up because the database was overloaded or unavailable (db/errors.py)",
    ["reason"],
)
LEDGER_VERIFY_FINDINGS = Counter(
    "billing_ledger_verify_findings_total", "Problems found by ledger verification", ["check"]
)

QUEUE_PUBLISHED = Counter(
    "billing_queue_published_total", "Messages published (confirmed)", ["queue"]
)
QUEUE_CONSUMED = Counter(
    "billing_queue_consumed_total", "Messages handled and acknowledged", ["queue", "outcome"]
)
QUEUE_RETRIED = Counter("billing_queue_retried_total", "Messages sent to a retry tier", ["queue"])
QUEUE_DEAD_LETTERED = Counter(
    "billing_queue_dead_lettered_total",
    "Messages moved to the dead-letter queue",
    ["queue", "reason"],
)
HANDLER_LATENCY = Histogram(
    "billing_queue_handler_seconds",
    "Handler time including commit",
    ["queue"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
OUTBOX_BACKLOG = Gauge("billing_outbox_backlog", "Outbox rows due and not yet published")
OUTBOX_OLDEST_AGE = Gauge(
    "billing_outbox_oldest_unsent_seconds",
    "Age of the oldest due, unpublished outbox row (queue stuck signal)",
)
SCHEDULER_LEADER = Gauge("billing_scheduler_leader", "1 while this scheduler holds the lease")
SCHEDULER_JOB_RUNS = Counter(
    "billing_scheduler_job_runs_total", "Periodic job runs", ["job", "outcome"]
)
GATEWAY_CALLS = Counter(
    "billing_gateway_calls_total", "Calls to Cashfree by operation and outcome", ["op", "outcome"]
)
WEBHOOKS_RECEIVED = Counter(
    "billing_webhooks_received_total", "Cashfree webhooks by outcome", ["outcome"]
)
PAYMENT_TRANSITIONS = Counter(
    "billing_payment_transitions_total", "Payment state changes", ["from_status", "to_status"]
)
REFUND_TRANSITIONS = Counter(
    "billing_refund_transitions_total", "Refund state changes", ["from_status", "to_status"]
)
DOCUMENTS_ISSUED = Counter(
    "billing_tax_documents_issued_total", "Invoices and credit notes issued", ["kind"]
)
FRAUD_EVENTS = Counter("billing_fraud_events_total", "Fraud events recorded", ["kind"])
REDIS_FALLBACKS = Counter(
    "billing_redis_fallbacks_total",
    "Decisions taken without Redis (down, slow or remembered down), by purpose",
    ["purpose"],
)
COMMUNITY_LOOKUPS = Counter(
    "billing_community_lookups_total",
    "Community directory reads: cached, or asked of MongoDB, by outcome",
    ["outcome"],  # cached, found, not_found, invalid, unavailable
)
NOTIFICATION_DELIVERIES = Counter(
    "billing_notification_deliveries_total",
    "Notification send attempts by channel and outcome (sent, retrying, failed, skipped)",
    ["channel", "outcome"],
)
# Bearer tokens refused (reason: a coarse kind, never the token or its claims; the answer
# itself never says which check failed), and fetches of CommDesk's JWKS (outcome ok|failed).
AUTH_REJECTED = Counter(
    "billing_auth_rejected_total", "Bearer tokens refused with 401, by kind of failure", ["reason"]
)
JWKS_FETCHES = Counter("billing_jwks_fetches_total", "Fetches of CommDesk's JWKS", ["outcome"])
# route_class: orders | money | webhooks | reads; outcome: allowed | limited; backend: redis |
# local (this process alone, while Redis is away).
RATE_LIMIT_DECISIONS = Counter(
    "billing_rate_limit_decisions_total",
    "Rate-limit decisions by route class, outcome and where they were counted",
    ["route_class", "outcome", "backend"],
)
RATE_LIMIT_LOCAL = Gauge(
    "billing_rate_limit_local", "1 while this process counts rate limits itself (Redis away)"
)

# Reconciliation (`commdesk-billing reconcile` and its scheduled job). source: internal (the
# ledger's invariants) | gateway (Cashfree's settlement and recon reports) | payouts (transfers
# and UTRs); kind: a finding's kind (a short fixed vocabulary, never an id).
RECONCILIATION_FINDINGS_OPEN = Gauge(
    "billing_reconciliation_findings_open",
    "Reconciliation findings still open, by source and kind",
    ["source", "kind"],
)
RECONCILIATION_RUNS = Counter(
    "billing_reconciliation_runs_total",
    "Reconciliation runs by source and outcome",
    ["source", "outcome"],
)
RECONCILIATION_LAST_SUCCESS = Gauge(
    "billing_reconciliation_last_success_timestamp_seconds",
    "When each reconciliation source last ran to the end (unix seconds)",
    ["source"],
)
# The internal run's figure per `ledger verify` check (0 when clean): wallet drift, negative
# balances, unbalanced journals… each under the check's own name.
LEDGER_INVARIANT_VIOLATIONS = Gauge(
    "billing_ledger_invariant_violations",
    "Problems the last internal reconciliation found, by ledger verify check",
    ["check"],
)
