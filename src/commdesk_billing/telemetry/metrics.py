"""Prometheus metrics (text format at /metrics).

Every label takes a short, fixed vocabulary: never an id, an address or free text (a label
value is a time series, kept for weeks). Every process serves its own /metrics (API, worker,
scheduler); the API's several uvicorn workers share a directory of figures
(`telemetry/exposition.py`), which is why each gauge says how its per-process values combine
(`multiprocess_mode`; ignored in a single process).

Counts of what a transaction did are counted once it committed (`telemetry/aftercommit.py`):
a transaction run again after a serialization failure counts once. Money is never counted:
revenue, deferred revenue and fees are read from the ledger's house accounts by the
scheduler (`billing_ledger_house_balance_paise`, `billing_revenue_paise`), so a rollback can
never make them drift.
"""

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
OUTBOX_BACKLOG = Gauge(
    "billing_outbox_backlog",
    "Outbox rows due and not yet published",
    multiprocess_mode="livemax",
)
OUTBOX_OLDEST_AGE = Gauge(
    "billing_outbox_oldest_unsent_seconds",
    "Age of the oldest due, unpublished outbox row (queue stuck signal)",
    multiprocess_mode="livemax",
)
SCHEDULER_LEADER = Gauge(
    "billing_scheduler_leader",
    "1 while this scheduler holds the lease",
    multiprocess_mode="livemax",
)
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
# CPU of drawing one PDF (the render thread's own time, so a loaded event loop does not
# count): counted apart from issuing, which is database work in the purchase's wake.
PDF_RENDER_CPU = Histogram(
    "billing_tax_document_pdf_cpu_seconds",
    "CPU time to draw one tax document's PDF",
    ["kind"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
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
WEBHOOK_DELIVERIES = Counter(
    "billing_webhook_deliveries_total",
    "Outbound webhook POSTs (events out) by outcome (succeeded, retrying, failed)",
    ["outcome"],
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
    "billing_rate_limit_local",
    "1 while this process counts rate limits itself (Redis away)",
    multiprocess_mode="livemax",  # 1 while any live API worker is on its own
)

# The seed's analytics. Counted after commit (`aftercommit.count`). channel: checkout (a
# person on the hosted checkout) | auto_recharge (a recharge the wallet asked for, by checkout
# link or on a mandate) | mandate (any other charge on a mandate: subscription renewals);
# kind: the payment's kind (pack, custom, sponsorship, subscription…: a fixed set in code);
# pack: a catalog pack code, or "custom" for a top-up of an amount (the catalog is a handful
# of packs kept by finance, never a client's input); reason: `modules/payments/failures.py`.
PAYMENTS_SUCCEEDED = Counter(
    "billing_payments_succeeded_total",
    "Payments Cashfree reported paid (moved to PAID), by channel and kind",
    ["channel", "kind"],
)
PAYMENTS_FAILED = Counter(
    "billing_payments_failed_total",
    "Payments failed, dropped, expired or cancelled, by reason (a fixed vocabulary)",
    ["reason"],
)
CREDIT_PURCHASES = Counter(
    "billing_credit_purchases_total",
    "Credit purchases credited to a wallet, by pack and channel",
    ["pack", "channel"],
)
CREDITS_PURCHASED = Counter(
    "billing_credits_purchased_total",
    "Credits granted by purchases (base and bonus), by pack and channel",
    ["pack", "channel"],
)
REFUNDS_CREATED = Counter("billing_refunds_created_total", "Refunds requested (created)")
REFUNDS_FINISHED = Counter(
    "billing_refunds_finished_total",
    "Refunds that reached an end status (success, failed, cancelled)",
    ["status"],
)
# event: the auto-recharge decision log's kinds (fired, skipped, succeeded, failed,
# disabled…, `autorecharge/model.py`).
AUTO_RECHARGE_EVENTS = Counter(
    "billing_auto_recharge_events_total",
    "Auto-recharge decisions recorded, by kind",
    ["event"],
)

# Read from the database by the scheduler's `metrics_snapshot` job (its leader only), every
# BILLING_METRICS_SNAPSHOT_EVERY_S. account: a house account's code (a fixed list,
# `modules/ledger/gauges.py`); balances on the account's normal side.
LEDGER_HOUSE_BALANCE_PAISE = Gauge(
    "billing_ledger_house_balance_paise",
    "Balance of each INR house account on its normal side, in paise",
    ["account"],
    multiprocess_mode="livemax",
)
LEDGER_HOUSE_BALANCE_CREDITS = Gauge(
    "billing_ledger_house_balance_credits",
    "Balance of each CREDITS house account on its normal side, in credits",
    ["account"],
    multiprocess_mode="livemax",
)
# kind: recognized (platform consumption, breakage, subscriptions) | deferred (bought, not
# yet consumed) | fees (platform, sponsorship and payout fees).
REVENUE_PAISE = Gauge(
    "billing_revenue_paise",
    "Revenue to date from the ledger's house accounts, by kind, in paise",
    ["kind"],
    multiprocess_mode="livemax",
)
WALLETS_NEGATIVE = Gauge(
    "billing_wallets_negative",
    "Wallets with a balance below zero (available, held or pending); CHECKs forbid it",
    multiprocess_mode="livemax",
)
AUTO_RECHARGE_ENABLED_WALLETS = Gauge(
    "billing_auto_recharge_enabled_wallets",
    "Wallets with auto-recharge turned on",
    multiprocess_mode="livemax",
)
# queue: a work queue of topology.QUEUES; kind: work | dlq.
QUEUE_DEPTH = Gauge(
    "billing_queue_depth",
    "Messages ready in each queue (RabbitMQ's count, passive declare)",
    ["queue", "kind"],
    multiprocess_mode="livemax",
)
QUEUE_CONSUMERS = Gauge(
    "billing_queue_consumers",
    "Consumers attached to each work queue",
    ["queue"],
    multiprocess_mode="livemax",
)
# dependency: postgresql | redis | rabbitmq (what the snapshot could reach, each with a
# short timeout).
DEPENDENCY_UP = Gauge(
    "billing_dependency_up",
    "1 when the scheduler's last probe reached the dependency, else 0",
    ["dependency"],
    multiprocess_mode="livemax",
)
POSTGRES_CONNECTIONS = Gauge(
    "billing_postgres_connections",
    "Connections open on the PostgreSQL server (pg_stat_activity, client backends)",
    multiprocess_mode="livemax",
)
POSTGRES_MAX_CONNECTIONS = Gauge(
    "billing_postgres_max_connections",
    "Connections PostgreSQL accepts from ordinary roles (max_connections minus reserved)",
    multiprocess_mode="livemax",
)
METRICS_SNAPSHOT_LAST_SUCCESS = Gauge(
    "billing_metrics_snapshot_last_success_timestamp_seconds",
    "When the scheduler last read every database and broker figure (unix seconds)",
    multiprocess_mode="livemax",
)
# The worker's and scheduler's readiness checks (telemetry/health.py), as served on /readyz;
# check: a fixed name per process kind (broker, consuming, relay, leader…).
PROCESS_READY = Gauge(
    "billing_process_ready",
    "1 while the process's readiness check passes, by check",
    ["check"],
    multiprocess_mode="livemax",
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
