"""Who owns each table: the one module whose code writes SQL on it. Every other module asks
the owner's service. `tests/architecture/test_tables.py` reads the SQL of every module and
fails on a table named outside its owner, unless it is listed in SHARED below with why.

A new table is added here in the same change as its migration.
"""

from __future__ import annotations

# table → owning package (a folder under `modules/`, or an infrastructure package).
OWNERS: dict[str, str] = {
    "users": "modules/users",
    "billing_profiles": "modules/users",
    "wallets": "modules/wallet",
    "wallet_transactions": "modules/wallet",
    "wallet_holds": "modules/wallet",
    "credit_lots": "modules/wallet",
    "credit_lot_movements": "modules/wallet",
    "wallet_verify_lots": "modules/wallet",
    "ledger_accounts": "modules/ledger",
    "ledger_journals": "modules/ledger",
    "ledger_entries": "modules/ledger",
    "ledger_seals": "modules/ledger",
    "ledger_rollups": "modules/ledger",
    "ledger_verify_checkpoint": "modules/ledger",
    "ledger_verify_sums": "modules/ledger",
    "ledger_verify_wallets": "modules/ledger",
    "ledger_verify_figures": "modules/ledger",
    "credit_packs": "modules/payments",
    "payments": "modules/payments",
    "payment_attempts": "modules/payments",
    "payment_transitions": "modules/payments",
    "payment_webhooks": "modules/webhooks",
    "refunds": "modules/refunds",
    "refund_transitions": "modules/refunds",
    "invoices": "modules/invoices",
    "document_sequences": "modules/invoices",
    "billing_events": "modules/billing",
    "fraud_events": "modules/fraud",
    "fraud_assessments": "modules/fraud",
    "fraud_lists": "modules/fraud",
    "fraud_reviews": "modules/fraud",
    "audit_logs": "modules/audit",
    "idempotency_keys": "idempotency",
    "outbox": "queues",
    "inbox": "queues",
    "gateway_backoff": "gateway",
    "community_fee_plans": "modules/communities",
    "community_spends": "modules/communities",
    "community_spend_reversals": "modules/communities",
    "partners": "modules/partners",
    "partner_terms": "modules/partners",
    "partner_attributions": "modules/partners",
    "partner_shares": "modules/partners",
    "partner_share_reversals": "modules/partners",
    "payees": "modules/payees",
    "payout_accounts": "modules/payees",
    "sponsorships": "modules/sponsorships",
    "sponsorship_milestones": "modules/sponsorships",
    "settlements": "modules/settlements",
    "settlement_transfers": "modules/settlements",
    "payout_webhooks": "modules/settlements",
    "split_vendors": "modules/splits",
    "vendor_settlements": "modules/splits",
    "vendor_settlement_webhooks": "modules/splits",
    "auto_recharge_settings": "modules/autorecharge",
    "auto_recharges": "modules/autorecharge",
    "auto_recharge_events": "modules/autorecharge",
    "usage_meters": "modules/usage",
    "usage_price_versions": "modules/usage",
    "usage_metering": "modules/usage",
    "usage_aggregates": "modules/usage",
    "usage_debts": "modules/usage",
    "usage_debt_repayments": "modules/usage",
    "notification_deliveries": "modules/notifications",
    "subscription_plans": "modules/subscriptions",
    "subscriptions": "modules/subscriptions",
    "subscription_periods": "modules/subscriptions",
    "subscription_charges": "modules/subscriptions",
    "subscription_mandate_charges": "modules/subscriptions",
    "mandates": "modules/mandates",
    "subscription_webhooks": "modules/mandates",
    "subscription_plan_changes": "modules/subscriptions",
    "console_staff": "console",
    "console_sessions": "console",
    "reconciliation_findings": "modules/reconciliation",
    "reconciliation_finding_transitions": "modules/reconciliation",
    "analytics_ledger_daily": "modules/analytics",
    "analytics_activity_daily": "modules/analytics",
    "analytics_days": "modules/analytics",
    "webhook_events": "modules/events",
    "webhook_endpoints": "modules/events",
    "webhook_deliveries": "modules/events",
    "webhook_attempts": "modules/events",
}

# (package, table) → (what it may do, why): SQL a package may run on a table it does not
# own. Each is a statement that must stay one statement (one snapshot, or one round trip on
# a hot path). "reads" is checked: such a package never writes that table.
SHARED: dict[tuple[str, str], tuple[str, str]] = {
    ("modules/wallet", "ledger_accounts"): (
        "writes",
        "a wallet and its two ledger accounts are created in one statement, so neither "
        "exists without the other",
    ),
    ("modules/wallet", "ledger_entries"): (
        "reads",
        "sync-balance reads a wallet's entries, lots, holds and statement in one statement, "
        "so every figure comes from the same snapshot",
    ),
    ("modules/billing", "payments"): (
        "reads",
        "a payment's billing event copies the payment's figures in its own insert",
    ),
    ("modules/partners", "users"): (
        "reads",
        "the buyer's attribution is found from the payment's user id in one statement, in "
        "every credited purchase's transaction",
    ),
    ("modules/invoices", "billing_events"): (
        "writes",
        "a document and its billing event are one insert: the series counter is held for "
        "the fewest statements",
    ),
    ("modules/invoices", "payments"): (
        "reads",
        "the hourly re-issue finds credited payments with no invoice in one anti-join",
    ),
    ("modules/invoices", "refunds"): (
        "reads",
        "the hourly re-issue finds successful refunds with no credit note in one anti-join",
    ),
    ("modules/fraud", "billing_events"): (
        "reads",
        "scoring an order reads the lists and the buyer's whole history in one statement "
        "(the order's hot path: one round trip instead of ten)",
    ),
    ("modules/fraud", "community_spends"): (
        "reads",
        "the order-scoring statement: credits spent into one community (the drain rule)",
    ),
    ("modules/fraud", "users"): (
        "reads",
        "the order-scoring statement: the account's age",
    ),
    ("modules/fraud", "credit_packs"): (
        "reads",
        "the order-scoring statement: the largest pack on sale",
    ),
    ("modules/reconciliation", "payments"): (
        "reads",
        "the gateway reconciliation compares one snapshot of what we captured (payments "
        "and their refunds, one statement each) with Cashfree's reports",
    ),
    ("modules/reconciliation", "refunds"): (
        "reads",
        "the gateway reconciliation: the refunds Cashfree made for us, read with their "
        "payment's order in one statement",
    ),
    ("modules/reconciliation", "settlement_transfers"): (
        "reads",
        "the payouts reconciliation: every transfer we sent and what we recorded of it, "
        "read with its settlement in one statement",
    ),
    ("modules/reconciliation", "settlements"): (
        "reads",
        "the payouts reconciliation: a transfer's settlement (its status and UTR) in the "
        "same statement as the transfer",
    ),
    ("modules/analytics", "ledger_entries"): (
        "reads",
        "rollups: a day's postings per account and journal kind, recomputed in one "
        "statement (the same statement answers for days not rolled up yet)",
    ),
    ("modules/analytics", "ledger_journals"): (
        "reads",
        "rollups: the journal kind of each day's postings, in that statement",
    ),
    ("modules/analytics", "ledger_accounts"): (
        "reads",
        "the trial balance names each account (code, kind, normal side)",
    ),
    ("modules/analytics", "payments"): (
        "reads",
        "rollups: a day's payments by status and method; a payment's creation day",
    ),
    ("modules/analytics", "refunds"): (
        "reads",
        "rollups: a day's refunds by status; a refund's creation day",
    ),
    ("modules/analytics", "auto_recharges"): (
        "reads",
        "rollups: a day's auto-recharges by status",
    ),
    ("modules/analytics", "settlements"): (
        "reads",
        "rollups: a day's settlements by status",
    ),
    ("modules/analytics", "fraud_events"): (
        "reads",
        "rollups: a day's fraud events by kind and severity",
    ),
    ("modules/analytics", "community_spends"): (
        "reads",
        "the per-community activity written to MongoDB: a day's spends",
    ),
    ("modules/analytics", "invoices"): (
        "reads",
        "the GST summary: a period's tax documents by section, place of supply and rate",
    ),
}

# Files that only read, across every table, to check the books (`ledger verify`).
READ_ONLY_EVERYWHERE = ("invariants.py",)
