"""Configuration: one typed object, read from `BILLING_*` environment variables.

Production refuses the development defaults (JWT secret, plaintext database links), so a
mis-deployed process fails at start-up instead of serving money with a known secret.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0000"  # noqa: S105 - refused in production
# The local sandbox's credentials (it reads the same variables); refused in production.
DEV_CASHFREE_ID = "TEST_commdesk_sandbox"
DEV_CASHFREE_SECRET = "cfsk_ma_test_commdesk_sandbox_secret"  # noqa: S105
# A well-formed placeholder (state 29, PAN-shaped, "Z", check character); refused in production.
DEV_SELLER_GSTIN = "29AAACC0000A1Z5"
# A DNS name or an IP literal, lower case (a Host header value without its port).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = rf"^(?:{_LABEL}(?:\.{_LABEL})*|[0-9a-f:.]+)$"


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    # A refusal names the variable and the rule, never the values it was given: they hold
    # every secret (the JWT key, Cashfree's secret, a MongoDB URL's password).
    model_config = SettingsConfigDict(
        env_prefix="BILLING_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    env: Environment = Environment.development

    # Neon hands out `postgresql://user:pass@host/db?sslmode=require`; both its pooled
    # (PgBouncer, transaction mode) and direct endpoints are accepted as they are.
    database_url: str = "postgresql://postgres@127.0.0.1:5432/commdesk_billing"
    # Migrations, advisory-lock leases and LISTEN need a real session: never the pooler.
    database_direct_url: str | None = None
    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    db_max_overflow: Annotated[int, Field(ge=0, le=200)] = 10
    # Does BILLING_DATABASE_URL lead to a transaction-mode pooler (PgBouncer, Neon's pooled
    # endpoint)? "auto" says yes for hosts named like Neon's pooled endpoints (`-pooler`).
    db_pooler: Literal["auto", "transaction", "none"] = "auto"
    # A checkout ping costs a round trip per transaction. Off by default: a connection that
    # died while idle fails its transaction, which `in_transaction` runs again (every
    # operation is idempotent by key, so even an ambiguous COMMIT is safe to repeat).
    db_pool_pre_ping: bool = False
    db_statement_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 15_000
    # No connection keeps a query plan longer than this (`db/plans.py`): a plan made while a
    # table was tiny is a scan, and nothing else replaces it while autovacuum is off. 0: keep
    # plans until PostgreSQL itself invalidates them.
    db_plan_max_age_s: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    # How long a transaction waits for one of the pool's connections, and for a new
    # connection to be opened, before giving up with a 503 (`db/errors.py`). SQLAlchemy's
    # and asyncpg's defaults (30 s and 60 s) would turn a short overload into a long hang.
    db_pool_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    db_connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    # Backends `ledger verify --full` shares its chain walk among (each on the run's one
    # snapshot; `--jobs` overrides). One backend hashes ~200 000 entries a CPU second, so
    # this is about the database server's free cores; 1 walks on the run's connection alone.
    ledger_verify_jobs: Annotated[int, Field(ge=1, le=64)] = 2

    # Rate limits and fraud velocity live here (Upstash in production: `rediss://default:
    # <token>@host:6379` works as it is). A secret: the URL carries the token.
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # Prepended to every key: lets test runs and side-by-side deployments share a server.
    redis_key_prefix: Annotated[str, Field(pattern=r"^[a-z0-9_.:-]{0,40}$")] = "cdb:"
    # Redis only ever speeds a decision up (a counter, a window): a slow one must not slow a
    # request down, so its answers are waited for briefly and an outage is remembered for
    # `redis_retry_after_s` instead of being paid for on every request.
    redis_timeout_s: Annotated[float, Field(gt=0, le=10)] = 0.25
    redis_pool_size: Annotated[int, Field(ge=1, le=1000)] = 50
    redis_retry_after_s: Annotated[float, Field(gt=0, le=300)] = 2.0
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # One connection attempt (TCP, TLS and the AMQP handshake) may take this long.
    rabbitmq_connect_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    # Prepended to every queue name: lets test runs and side-by-side deployments share a broker.
    rabbitmq_queue_prefix: Annotated[str, Field(pattern=r"^[a-z0-9_.-]{0,40}$")] = ""
    # Backoff ladder (seconds) of the retry queues; attempt n waits ladder[n-1] (the last
    # tier repeats), with +/-20 % jitter.
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 6
    consumer_prefetch: Annotated[int, Field(ge=1, le=1000)] = 16
    relay_batch: Annotated[int, Field(ge=1, le=10_000)] = 500
    relay_idle_s: Annotated[float, Field(gt=0, le=60)] = 0.2
    outbox_retention_s: Annotated[int, Field(ge=60)] = 7 * 86400
    inbox_retention_s: Annotated[int, Field(ge=60)] = 30 * 86400
    # How long an Idempotency-Key's stored answer is kept (Stripe keeps 24 h): a key older
    # than this may be pruned, and the same key then starts a new request. An hour at the
    # least (a client's retries must find the answer), 90 days at the most.
    idempotency_retention_s: Annotated[int, Field(ge=3600, le=90 * 86400)] = 86400
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: no metrics server
    # Where the worker's and scheduler's /metrics, /healthz, /readyz listen: loopback unless
    # Prometheus scrapes them from elsewhere (a container's address; unauthenticated, so
    # never a public one).
    worker_metrics_host: str = "127.0.0.1"
    # How often the scheduler's leader reads the ledger, wallet, PostgreSQL and broker figures
    # into gauges (telemetry/metrics.py, `metrics_snapshot`).
    metrics_snapshot_every_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Fault injection for failure tests only: the worker SIGKILLs itself after committing a
    # message of this queue and before acknowledging it. Refused in production.
    fault_crash_after_commit: str | None = None

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "commdesk"
    jwt_audience: str = "commdesk-billing"
    jwt_leeway_s: Annotated[int, Field(ge=0, le=300)] = 30
    # CommDesk's signing keys (RS256), as a JWKS document: required in production, where
    # HS256 with the shared secret is refused. Over https; plain http only to a loopback
    # address outside production (a development identity server, the tests').
    jwt_jwks_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2000)] | None = None
    # How long a fetched key set is used before it is fetched again; an unknown `kid` fetches
    # it sooner, but never twice within `jwt_jwks_min_refresh_s` (a flood of made-up kids
    # costs the JWKS endpoint one request per interval, per process).
    jwt_jwks_ttl_s: Annotated[float, Field(ge=1, le=86400)] = 300.0
    jwt_jwks_min_refresh_s: Annotated[float, Field(ge=0.1, le=3600)] = 10.0
    # While CommDesk's JWKS cannot be fetched, keys already known keep verifying for this
    # long after the last good fetch (then every RS256 token is refused until it answers).
    jwt_jwks_max_stale_s: Annotated[float, Field(ge=1, le=7 * 86400)] = 86400.0
    jwt_jwks_timeout_s: Annotated[float, Field(gt=0, le=30)] = 3.0
    # Development only: a PEM RSA private key (`commdesk-billing dev` makes one and serves its
    # JWKS); `issue_token` then signs RS256 with it, as CommDesk's identity service would.
    dev_jwt_key_file: str | None = None

    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    # Bodies of money-moving requests are tiny; anything bigger is refused before parsing.
    max_body_bytes: Annotated[int, Field(ge=1024, le=10_000_000)] = 64 * 1024
    # `POST /v1/usage/events` carries up to 1 000 events (about 150 bytes each).
    usage_max_body_bytes: Annotated[int, Field(ge=1024, le=10_000_000)] = 512 * 1024

    # Upper bound of one debit/grant/hold, in credits: refuses absurd amounts early.
    max_credits_per_operation: Annotated[int, Field(ge=1, le=10**12)] = 100_000_000
    # At most this many debit requests of one wallet share one transaction (the debit
    # route's micro-batcher, modules/wallet/batcher.py); 1 gives each its own.
    debit_batch_max: Annotated[int, Field(ge=1, le=1000)] = 64
    # The platform's fee on a community spend, in basis points, where a community has no
    # fee plan of its own (DESIGN §10: 1000 = 10 %). Plans are bounded the same way.
    community_fee_bps: Annotated[int, Field(ge=0, le=5000)] = 1000
    # How long a process reuses a community's fee plan on the spend path (0: every spend
    # reads it). A change made through another process applies within this time.
    fee_plan_cache_s: Annotated[float, Field(ge=0, le=300)] = 5.0
    # Sponsor payments (DESIGN §11): the platform's fee in basis points of the amount a
    # sponsor pledges to a community (charged on top, with GST on the fee; at least 1 bps,
    # so every sponsorship has a fee to invoice), and the bounds of that amount, in paise.
    sponsorship_fee_bps: Annotated[int, Field(ge=1, le=5000)] = 500
    sponsorship_min_paise: Annotated[int, Field(ge=10_000, le=10**10)] = 10_000
    sponsorship_max_paise: Annotated[int, Field(ge=10_000, le=10**10)] = 50_000_000
    # Easy Split vendors still in Cashfree's KYC are asked about again this often (they are
    # also asked whenever read and before a sponsorship of their community chooses its path).
    split_vendor_refresh_every_s: Annotated[int, Field(ge=10, le=86400)] = 300
    # Auto-recharge (DESIGN §12). The kill switch: false, no request is acted on (each is
    # recorded as skipped, "paused"); crossings are still logged.
    auto_recharge_enabled: bool = True
    # Guards: no new recharge this long after one succeeded; a failure backs off
    # base * 2^(failures-1), at most the max; more than runaway_max recharges opened for one
    # wallet within the window is a runaway (alert, skipped).
    auto_recharge_cooldown_s: Annotated[int, Field(ge=0, le=30 * 86400)] = 3600
    auto_recharge_backoff_s: Annotated[int, Field(ge=0, le=7 * 86400)] = 3600
    auto_recharge_backoff_max_s: Annotated[int, Field(ge=0, le=30 * 86400)] = 2 * 86400
    auto_recharge_runaway_max: Annotated[int, Field(ge=1, le=1000)] = 5
    auto_recharge_runaway_window_s: Annotated[int, Field(ge=60, le=30 * 86400)] = 86400
    # The predictive level: burn rate over the trailing window times the lead time, which is the
    # pre-debit notice + the earliest-debit rule (next day) + a margin (cashfree.md §12.5).
    auto_recharge_burn_window_s: Annotated[int, Field(ge=3600, le=90 * 86400)] = 7 * 86400
    auto_recharge_notice_s: Annotated[int, Field(ge=0, le=7 * 86400)] = 86400
    auto_recharge_earliest_debit_s: Annotated[int, Field(ge=0, le=7 * 86400)] = 86400
    auto_recharge_margin_s: Annotated[int, Field(ge=0, le=7 * 86400)] = 12 * 3600
    auto_recharge_predict_every_s: Annotated[int, Field(ge=10, le=86400)] = 900
    auto_recharge_settle_every_s: Annotated[float, Field(ge=0.1, le=3600)] = 60.0
    # The member's payment page for an auto-recharge order ({payment_id} filled in), sent
    # when Cashfree's own checkout is used (`cashfree_checkout_url` unset: it is opened by
    # its JS SDK, so there is no URL of Cashfree's to send). With neither, auto-recharge
    # without a mandate cannot tell the member where to pay, and is refused.
    auto_recharge_checkout_url: (
        Annotated[str, Field(pattern=r"^https?://[^\s]*\{payment_id\}[^\s]*$")] | None
    ) = None
    # How often the scheduler recomputes the analytics rollups of the recent days (and of
    # any past day not settled yet, a month of days per run).
    analytics_refresh_every_s: Annotated[float, Field(ge=5, le=86400)] = 300.0
    # How often the scheduler renews due subscriptions (and runs their dunning retries).
    subscription_renew_every_s: Annotated[int, Field(ge=5, le=86400)] = 60
    # How long before an INR period starts its charge is raised on the member's mandate: at
    # least the pre-debit notice (24 h) plus the earliest debit date (T+1, T+2 after 21:00
    # IST) and UPI's hourly retries (cashfree.md §12.5, §15); at most the T+14 schedule limit.
    subscription_inr_lead_s: Annotated[int, Field(ge=2 * 86400, le=14 * 86400)] = 3 * 86400
    hold_default_ttl_s: Annotated[int, Field(ge=1, le=30 * 86400)] = 900
    hold_max_ttl_s: Annotated[int, Field(ge=1, le=90 * 86400)] = 7 * 86400

    # --- Cashfree -----------------------------------------------------------------------
    # The real service is https://api.cashfree.com/pg (production) or
    # https://sandbox.cashfree.com/pg; the default is the project's own local sandbox.
    cashfree_base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = (
        "http://127.0.0.1:8765/pg"
    )
    cashfree_client_id: Annotated[str, Field(min_length=1, max_length=200)] = DEV_CASHFREE_ID
    cashfree_client_secret: SecretStr = SecretStr(DEV_CASHFREE_SECRET)
    # Secrets being rotated out: webhooks signed with them are still accepted.
    cashfree_previous_secrets: tuple[SecretStr, ...] = ()
    cashfree_api_version: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] = "2025-01-01"
    cashfree_timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    cashfree_max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    # The longest our processes sleep on a Cashfree 429 before repeating the call in place.
    # 0: never. A 429 goes up at once: an HTTP request answers 503 with Retry-After, a
    # consumer's message goes to the retry ladder, and the sync jobs back off
    # (`gateway/backoff.py`).
    cashfree_rate_limit_wait_s: Annotated[float, Field(ge=0, le=60)] = 0.0
    # Where a buyer pays. Cashfree's own checkout is opened by its JS SDK from the
    # payment_session_id (leave unset); the local sandbox serves a page at this template.
    cashfree_checkout_url: str | None = (
        "http://127.0.0.1:8765/pg/view/checkout?payment_session_id={payment_session_id}"
    )
    # Our public address: Cashfree posts webhooks to <public_base_url>/v1/webhooks/cashfree.
    public_base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = "http://127.0.0.1:8000"
    # Where Cashfree sends the buyer after paying ({order_id} is filled in by Cashfree).
    payment_return_url: str | None = None
    # Where a member authorises a mandate: CommDesk's page that opens Cashfree's JS SDK
    # (`subscriptionsCheckout`) with {subscription_session_id}. Unset: the sandbox's hosted
    # page under `cashfree_base_url` (in production: no link; the frontend opens Cashfree's
    # checkout from the mandate's `subscription_session_id`).
    mandate_authorize_url: (
        Annotated[str, Field(pattern=r"^https?://[^\s]*\{subscription_session_id\}[^\s]*$")] | None
    ) = None
    payment_order_ttl_s: Annotated[int, Field(ge=5, le=30 * 86400)] = 1800
    # An order not settled this long after its last change is asked about (lost webhooks).
    payment_sync_after_s: Annotated[float, Field(ge=1, le=86400)] = 120.0
    payment_sync_every_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    payment_sync_batch: Annotated[int, Field(ge=1, le=10_000)] = 500
    # Open (unpaid) orders one user may have at once: a cheap brake on order spam.
    max_open_orders_per_user: Annotated[int, Field(ge=1, le=1000)] = 10
    # Custom top-ups, whole rupees between these bounds (paise).
    topup_min_paise: Annotated[int, Field(ge=100)] = 1_000
    topup_max_paise: Annotated[int, Field(ge=100, le=10**10)] = 5_000_000
    # GST (DESIGN §3): 18 % split CGST+SGST within our state, IGST across states.
    gst_mode: Literal["inclusive", "exclusive"] = "inclusive"
    gst_rate_bp: Annotated[int, Field(ge=0, le=10_000)] = 1800
    seller_state_code: Annotated[str, Field(pattern=r"^[0-9]{2}$")] = "29"
    # Webhook receiver. Signature timestamps older than this are refused; Cashfree's own
    # retries arrive up to ~40 minutes (default policy) or hours (custom policies) later,
    # and duplicates are caught by deduplication, not by this window.
    webhook_max_age_s: Annotated[int, Field(ge=3600, le=7 * 86400)] = 86400
    webhook_max_future_s: Annotated[int, Field(ge=0, le=3600)] = 300
    # Optional allow-list of source IPs/CIDRs (Cashfree publishes its webhook IPs). The
    # client address is taken from X-Forwarded-For only when the peer is a trusted proxy.
    webhook_allowed_ips: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()

    # --- Cashfree Payouts V2 (another Cashfree app: its own pair) -----------------------
    # Production by default (cashfree.md §1.1, §6.2); the sandbox is
    # https://sandbox.cashfree.com/payout, the local one http://127.0.0.1:8765/payout.
    cashfree_payout_base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = (
        "https://api.cashfree.com/payout"
    )
    # Secure ID's bank-account verification (§13.4), called with the Payouts pair.
    cashfree_verification_base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = (
        "https://api.cashfree.com/verification"
    )
    # No defaults: a payouts client is only built from the environment's pair.
    cashfree_payout_client_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    cashfree_payout_client_secret: SecretStr | None = None
    # Secrets being rotated out: payout webhooks signed with them are still accepted.
    cashfree_payout_previous_secrets: tuple[SecretStr, ...] = ()
    cashfree_payout_api_version: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] = (
        "2024-01-01"
    )
    cashfree_payout_timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    cashfree_payout_max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    # Payees' account numbers are stored sealed (security/sealed.py) under these keys, from
    # the environment only: `{"<key id>": "<32 bytes, base64>", ...}`, the id new seals use,
    # and the key of the fingerprints that find one account again. No defaults.
    payout_account_keys: SecretStr | None = None
    payout_account_key_id: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,16}$")] | None = None
    payout_fingerprint_key: SecretStr | None = None
    # A changed payout account (any account after one that was verified) is not paid
    # before this long has passed: the payee's owners have time to notice a change they did
    # not make (at least 1 s: `ledger verify` holds every change to a cooling-off). The
    # first verified account is paid at once.
    payout_cooling_off_s: Annotated[int, Field(ge=1, le=30 * 86400)] = 72 * 3600
    # The weakest name match (Cashfree's bank-account verification) an account is accepted
    # with; weaker ones are stored `failed` and never paid.
    payout_name_match_min: Literal[
        "DIRECT_MATCH", "GOOD_PARTIAL_MATCH", "MODERATE_PARTIAL_MATCH", "POOR_PARTIAL_MATCH"
    ] = "GOOD_PARTIAL_MATCH"

    # --- Settlements and payouts (DESIGN §11; docs/runbook.md "Settlements") ----------
    # Scheduled runs settle each payee once per period, up to the period's start (IST).
    settlement_period: Literal["weekly", "daily"] = "weekly"
    # How often the scheduler looks for payees not yet settled for the current period.
    settlement_run_every_s: Annotated[float, Field(gt=0, le=86400)] = 3600.0
    # Rolling reserve: this share of what is being settled stays in payable for N days.
    settlement_reserve_bps: Annotated[int, Field(ge=0, le=10_000)] = 0
    settlement_reserve_days: Annotated[int, Field(ge=0, le=365)] = 7
    # Statutory deductions as rates of the settled gross; finance sets them (0: none).
    settlement_tds_bps: Annotated[int, Field(ge=0, le=10_000)] = 0  # income-tax, 194-O
    settlement_tcs_bps: Annotated[int, Field(ge=0, le=10_000)] = 0  # GST TCS, section 52
    # Charged to the payee per settlement (0: the platform bears Cashfree's charge).
    payout_fee_paise: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    # A net below this waits for the next period (₹100 by default; Cashfree's floor is ₹1).
    settlement_minimum_paise: Annotated[int, Field(ge=100, le=10**10)] = 10_000
    # Transfers tried per settlement (retryable failures only), and the wait between them.
    settlement_max_attempts: Annotated[int, Field(ge=1, le=9)] = 3
    settlement_retry_after_s: Annotated[float, Field(ge=0, le=7 * 86400)] = 900.0
    # A settlement in flight this long without news is asked about (a lost webhook).
    settlement_sync_after_s: Annotated[float, Field(ge=1, le=86400)] = 600.0
    settlement_sync_every_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # A paid settlement is asked about again every _PAID_SYNC_AFTER_S for this long after it
    # was paid: a reversal whose webhook was lost is found (0: never).
    settlement_reversal_watch_s: Annotated[float, Field(ge=0, le=90 * 86400)] = 7 * 86400.0
    settlement_paid_sync_after_s: Annotated[float, Field(ge=1, le=7 * 86400)] = 6 * 3600.0

    # --- Reconciliation (`commdesk-billing reconcile` and its scheduled job) ---------------
    # How often the scheduler reconciles (all three sources), and how far back each run
    # looks: payments, refunds and payout transfers made in the last `lookback_days`.
    reconciliation_every_s: Annotated[int, Field(ge=60, le=7 * 86400)] = 6 * 3600
    reconciliation_lookback_days: Annotated[int, Field(ge=1, le=90)] = 14
    # T+N: a captured payment Cashfree has not settled N days after it was paid is a finding.
    reconciliation_settle_days: Annotated[int, Field(ge=0, le=30)] = 3
    # Cashfree's reports trail a capture, a refund or a transfer's last step: what is younger
    # than this is not yet compared (missing at Cashfree, a transfer still moving).
    reconciliation_grace_s: Annotated[float, Field(ge=0, le=86400)] = 3600.0

    # --- Refunds ------------------------------------------------------------------------
    # Buyers may refund their own purchase within this many days (0: only finance and
    # support may refund). Only unconsumed credits are ever refundable.
    refund_self_service_days: Annotated[int, Field(ge=0, le=365)] = 0
    # A refund not settled this long after it was sent to Cashfree is asked about.
    refund_sync_after_s: Annotated[float, Field(ge=1, le=86400)] = 120.0
    refund_sync_every_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    # --- Tax documents (seller identity printed on every invoice and credit note) -------
    seller_legal_name: Annotated[str, Field(min_length=1, max_length=200)] = (
        "CommDesk Technologies Private Limited"
    )
    seller_address: Annotated[str, Field(min_length=1, max_length=400)] = (
        "2nd Floor, 100 Residency Road, Bengaluru, Karnataka 560025"
    )
    # 15 characters: state code, PAN, entity number, 'Z', checksum. The default is a
    # placeholder for development and is refused in production.
    seller_gstin: Annotated[str, Field(pattern=r"^[0-9]{2}[A-Z0-9]{13}$")] = DEV_SELLER_GSTIN
    # Services Accounting Code printed on line items (998439: other online content).
    invoice_sac_code: Annotated[str, Field(pattern=r"^[0-9]{6}$")] = "998439"
    # SAC of the platform's fee on a sponsorship (998599: other support services).
    platform_fee_sac_code: Annotated[str, Field(pattern=r"^[0-9]{6}$")] = "998599"
    # Numbers read SERIES/YYYY/NNNNNN ("CDB/2627/000001"): GST allows 16 characters, which
    # 3 letters leave room for up to 9 999 999 documents a year.
    invoice_series: Annotated[str, Field(pattern=r"^[A-Z]{2,3}$")] = "CDB"
    credit_note_series: Annotated[str, Field(pattern=r"^[A-Z]{2,3}$")] = "CDC"

    # --- Document storage (invoice PDFs) ------------------------------------------------
    storage_backend: Literal["local", "bunny"] = "local"
    storage_dir: str = "var/documents"
    # Bunny.net Storage: https://<region endpoint>/<zone>/<path>, authenticated by AccessKey.
    bunny_storage_endpoint: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = (
        "https://storage.bunnycdn.com"
    )
    bunny_storage_zone: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{0,64}$")] = ""
    bunny_access_key: SecretStr = SecretStr("")
    storage_timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0

    # --- Communities (MongoDB, CommDesk's own data; read only) ------------------------
    # As Atlas hands it out (`mongodb+srv://user:pass@cluster0.x.mongodb.net/?retryWrites=true`)
    # or `mongodb://host:port`: given to PyMongo unchanged. Secret: it carries credentials.
    mongodb_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017/")
    mongodb_database: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,63}$")] = "commdesk"
    # Server selection, connect and each operation as a whole: a community read that cannot
    # finish in this long answers 503, it never holds a request (or a money path) hostage.
    mongodb_timeout_s: Annotated[float, Field(gt=0, le=30)] = 3.0
    # How long a community read is reused (0: never). A miss is kept for at most 5 s of it.
    community_cache_s: Annotated[float, Field(ge=0, le=3600)] = 30.0

    # --- Billing notifications (modules/notifications; docs/runbook.md "Notifications") --
    # SMTP relay for email; no host: email is not sent (each delivery recorded skipped).
    # The password comes from the environment only. STARTTLS is on unless turned off (a
    # loopback sink in development); production refuses a password sent without it.
    smtp_host: Annotated[str, Field(pattern=r"^[A-Za-z0-9.:\[\]-]{1,253}$")] | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_user: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_from: Annotated[str, Field(min_length=3, max_length=200)] = (
        "CommDesk Billing <billing@commdesk.invalid>"
    )
    smtp_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    # CommDesk's notification service: each notification POSTed as JSON, signed with
    # HMAC-SHA256 over "<timestamp>.<body>". No URL: not sent (recorded skipped).
    notify_webhook_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    notify_webhook_secret: SecretStr | None = None
    notify_webhook_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    # How often the scheduler sends what is due; attempts per delivery (then failed for
    # good, with an error-level log event), and the backoff: base * 2^(attempt-1), capped.
    notification_deliver_every_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    notification_max_attempts: Annotated[int, Field(ge=1, le=50)] = 8
    notification_retry_base_s: Annotated[float, Field(gt=0, le=86400)] = 30.0
    notification_retry_max_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 6 * 3600.0

    # --- Events out (modules/events; docs/api.md "Webhooks out") ------------------------
    # Fernet keys (urlsafe base64 of 32 bytes), comma-separated, that seal each endpoint's
    # signing secret at rest: the first seals, any of them opens (rotation: put the new key
    # first, keep the old until every endpoint's secret was rotated). Unset outside
    # production: a fixed development key. Unset in production: endpoints cannot be created
    # or sent to.
    webhook_secret_keys: SecretStr | None = None
    # How often the scheduler sends what is due; one POST's whole deadline (connect, send,
    # answer); POSTs at once, and at most this many per endpoint in one round (a receiver
    # that is down takes only its own share of the round).
    webhook_deliver_every_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    webhook_timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    webhook_sends_at_once: Annotated[int, Field(ge=1, le=200)] = 16
    webhook_sends_per_endpoint: Annotated[int, Field(ge=1, le=100)] = 4
    # Retries: base * 2^(attempt-1) capped, each with up to 25% jitter, for the window
    # (then the delivery fails for good); an endpoint failing for this long without one
    # success is disabled (0: never).
    webhook_retry_base_s: Annotated[float, Field(gt=0, le=86400)] = 30.0
    webhook_retry_max_s: Annotated[float, Field(gt=0, le=86400)] = 3 * 3600.0
    webhook_retry_window_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 3 * 86400.0
    webhook_disable_after_s: Annotated[float, Field(ge=0, le=60 * 86400)] = 5 * 86400.0

    # --- Request hygiene (docs/api.md "Request hygiene"; docs/runbook.md) ---------------
    # Host header values served, exact names without port. Always added: the host of
    # BILLING_PUBLIC_BASE_URL, and outside production localhost, 127.0.0.1 and ::1.
    allowed_hosts: tuple[Annotated[str, Field(pattern=_HOSTNAME)], ...] = ()
    # Browser origins (`https://host[:port]`, no path) allowed cross-origin (CORS) and for
    # cookie-authenticated unsafe requests (CSRF). Empty: CORS closed, preflights refused.
    cors_origins: tuple[str, ...] = ()
    # Whether allowed origins may send cookies cross-origin (Access-Control-Allow-Credentials).
    cors_allow_credentials: bool = False
    cors_max_age_s: Annotated[int, Field(ge=0, le=86400)] = 600
    # Strict-Transport-Security max-age, sent in production only (0: not sent).
    hsts_max_age_s: Annotated[int, Field(ge=0, le=2 * 365 * 86400)] = 365 * 86400
    # /docs, /redoc and /openapi.json. Unset: served outside production, not in production.
    api_docs: bool | None = None
    # Bearer token Prometheus scrapes /metrics with. Unset: /metrics is open outside
    # production and not served (404) in production.
    metrics_token: SecretStr | None = None
    # A connection must deliver a request's line and headers within this long (slowloris);
    # an idle keep-alive connection is closed after `http_keep_alive_s` (keep it above the
    # proxy's idle timeout towards us, or the proxy reuses a connection we are closing).
    http_header_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    http_keep_alive_s: Annotated[int, Field(ge=1, le=3600)] = 5
    # The finance console's session cookie: unsafe requests carrying it need a CSRF token
    # (security/csrf.py) made with this secret; without a secret they are all refused.
    console_session_cookie: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = (
        "cdb_console_session"
    )
    console_csrf_cookie: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = (
        "cdb_console_csrf"
    )
    csrf_secret: SecretStr | None = None
    # The console's sign-in (src/.../console, docs/runbook.md "Finance console"): a session
    # ends `console_session_ttl_s` after sign-in, or after `console_idle_timeout_s` unused.
    console_session_ttl_s: Annotated[int, Field(ge=300, le=7 * 86400)] = 8 * 3600
    console_idle_timeout_s: Annotated[int, Field(ge=60, le=86400)] = 30 * 60
    # Sign-in attempts per window, per account (email) and per client address: a password
    # guesser gets a few tries an account, and a few dozen from one address, per window.
    console_sign_in_window_s: Annotated[int, Field(ge=10, le=86400)] = 15 * 60
    console_sign_in_per_account: Annotated[int, Field(ge=1, le=1000)] = 5
    console_sign_in_per_ip: Annotated[int, Field(ge=1, le=10_000)] = 30
    # --- Fraud scoring (modules/fraud, DESIGN §13) ---------------------------------------
    # A score 0-100 is the sum of the weights of the rules that fired (capped); at or over
    # `fraud_review_score` the order opens but its credits are held for a reviewer, at or
    # over `fraud_block_score` the order is refused (403 payment_blocked). A weight of 0
    # switches a rule off. Velocity windows count attempts in the last `fraud_window_s`.
    # The kill switch: off, no order is scored (nothing is blocked or held for review; the
    # fraud.detection consumer passes its messages by). For an incident, and for measuring
    # what scoring costs (bench/).
    fraud_enabled: bool = True
    fraud_review_score: Annotated[int, Field(ge=1, le=101)] = 60
    fraud_block_score: Annotated[int, Field(ge=1, le=101)] = 90
    fraud_window_s: Annotated[int, Field(ge=1, le=30 * 86400)] = 3600
    fraud_user_velocity_max: Annotated[int, Field(ge=1, le=100_000)] = 15
    fraud_user_velocity_weight: Annotated[int, Field(ge=0, le=100)] = 30
    fraud_ip_velocity_max: Annotated[int, Field(ge=1, le=100_000)] = 60
    fraud_ip_velocity_weight: Annotated[int, Field(ge=0, le=100)] = 25
    fraud_device_velocity_max: Annotated[int, Field(ge=1, le=100_000)] = 15
    fraud_device_velocity_weight: Annotated[int, Field(ge=0, le=100)] = 25
    # Failed payment attempts of the buyer within the window.
    fraud_failed_burst_max: Annotated[int, Field(ge=1, le=100_000)] = 5
    fraud_failed_burst_weight: Annotated[int, Field(ge=0, le=100)] = 30
    # Distinct accounts seen on one device (or, after payment, one UPI VPA / card).
    fraud_device_accounts_max: Annotated[int, Field(ge=1, le=100_000)] = 3
    fraud_device_accounts_weight: Annotated[int, Field(ge=0, le=100)] = 40
    # An account younger than this buying the largest pack on sale.
    fraud_new_account_s: Annotated[int, Field(ge=0, le=365 * 86400)] = 86400
    fraud_new_account_weight: Annotated[int, Field(ge=0, le=100)] = 20
    # A paid purchase of the same amount by the same buyer this recently (0: off).
    fraud_duplicate_window_s: Annotated[int, Field(ge=0, le=86400)] = 600
    fraud_duplicate_weight: Annotated[int, Field(ge=0, le=100)] = 35
    # Refunds per paid purchase of the buyer (basis points), once they have this many.
    fraud_refund_ratio_bp: Annotated[int, Field(ge=1, le=10_000)] = 5000
    fraud_refund_min_count: Annotated[int, Field(ge=1, le=1000)] = 2
    fraud_refund_ratio_weight: Annotated[int, Field(ge=0, le=100)] = 30
    # Credits bought within the window then spent into one community (basis points of them).
    fraud_drain_share_bp: Annotated[int, Field(ge=1, le=10_000)] = 9000
    fraud_drain_weight: Annotated[int, Field(ge=0, le=100)] = 30
    # Webhook amount/identity mismatches payments recorded against the buyer (30 days).
    fraud_mismatch_weight: Annotated[int, Field(ge=0, le=100)] = 50
    # After payment (the fraud.detection consumer): per UPI VPA / card fingerprint.
    fraud_instrument_velocity_max: Annotated[int, Field(ge=1, le=100_000)] = 10
    fraud_instrument_velocity_weight: Annotated[int, Field(ge=0, le=100)] = 30
    fraud_instrument_accounts_max: Annotated[int, Field(ge=1, le=100_000)] = 3
    fraud_instrument_accounts_weight: Annotated[int, Field(ge=0, le=100)] = 40
    # --- Rate limits (security/ratelimit; docs/runbook.md "Rate limits") ----------------
    # A token bucket (GCRA) per route class, per user (the token's `sub`) and per client
    # address: `<class>_user` (or `_ip`) requests per `rate_limit_window_s` on average, at
    # most `_burst` of them at once. Counted in Redis; while Redis is away each process
    # counts on its own (`rate_limit_local_max_keys` buckets at most).
    rate_limit_enabled: bool = True
    rate_limit_window_s: Annotated[int, Field(ge=1, le=86400)] = 60
    # Checkout-opening routes (orders, retries, sponsorships, mandates, subscriptions).
    rate_limit_orders_user: Annotated[int, Field(ge=1, le=10**7)] = 20
    rate_limit_orders_user_burst: Annotated[int, Field(ge=1, le=10**7)] = 10
    rate_limit_orders_ip: Annotated[int, Field(ge=1, le=10**7)] = 120
    rate_limit_orders_ip_burst: Annotated[int, Field(ge=1, le=10**7)] = 40
    # Money-moving POSTs (debits, spends, holds, refunds, usage events…) and other writes.
    rate_limit_money_user: Annotated[int, Field(ge=1, le=10**7)] = 120
    rate_limit_money_user_burst: Annotated[int, Field(ge=1, le=10**7)] = 30
    rate_limit_money_ip: Annotated[int, Field(ge=1, le=10**7)] = 1200
    rate_limit_money_ip_burst: Annotated[int, Field(ge=1, le=10**7)] = 300
    rate_limit_reads_user: Annotated[int, Field(ge=1, le=10**7)] = 600
    rate_limit_reads_user_burst: Annotated[int, Field(ge=1, le=10**7)] = 120
    rate_limit_reads_ip: Annotated[int, Field(ge=1, le=10**7)] = 3000
    rate_limit_reads_ip_burst: Annotated[int, Field(ge=1, le=10**7)] = 600
    # Webhooks refused (bad signature, stale, malformed) per source address; correctly
    # signed deliveries never count and are never limited.
    rate_limit_webhooks_ip: Annotated[int, Field(ge=1, le=10**7)] = 60
    rate_limit_webhooks_ip_burst: Annotated[int, Field(ge=1, le=10**7)] = 30
    # Service tokens (other CommDesk services acting for many members) get this many
    # times a user's allowance, and no per-address bucket.
    rate_limit_service_factor: Annotated[int, Field(ge=1, le=10_000)] = 50
    rate_limit_local_max_keys: Annotated[int, Field(ge=100, le=10**7)] = 100_000

    log_level: str = "INFO"
    log_json: bool = True
    # One JSON line per answered request (`http.access`: method, route template, status,
    # duration, request id; probes and scrapes left out).
    access_log: bool = True
    # Errors to Sentry (telemetry/errors.py): off while unset. The DSN holds its key.
    sentry_dsn: SecretStr | None = None
    # What Sentry files the events under (`release`); unset: the package's version.
    release: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,99}$")] | None = None
    # Traces (telemetry/tracing.py) to an OTLP/HTTP collector, e.g. http://collector:4318
    # (`/v1/traces` is added unless given): off, and costing nothing, while unset.
    # OTEL_EXPORTER_OTLP_HEADERS etc. are read by the exporter as the standard says.
    otel_exporter_otlp_endpoint: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    # Share of new traces kept; a trace another service started keeps its sampling decision.
    otel_traces_sample_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0

    @property
    def pooled(self) -> bool | None:
        return {"auto": None, "transaction": True, "none": False}[self.db_pooler]

    @property
    def direct_url(self) -> str:
        return self.database_direct_url or self.database_url

    @property
    def served_hosts(self) -> frozenset[str]:
        """Host header values answered (without port): `allowed_hosts`, our public host, and
        loopback outside production."""
        hosts = {h.lower() for h in self.allowed_hosts}
        if public := urlsplit(self.public_base_url).hostname:
            hosts.add(public.lower())
        if self.env is not Environment.production:
            hosts.update({"localhost", "127.0.0.1", "::1"})
        return frozenset(hosts)

    @property
    def docs_served(self) -> bool:
        return (
            self.api_docs if self.api_docs is not None else self.env is not Environment.production
        )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.fraud_review_score > self.fraud_block_score:
            raise ValueError("BILLING_FRAUD_REVIEW_SCORE exceeds BILLING_FRAUD_BLOCK_SCORE")
        if self.hold_default_ttl_s > self.hold_max_ttl_s:
            raise ValueError("BILLING_HOLD_DEFAULT_TTL_S exceeds BILLING_HOLD_MAX_TTL_S")
        if not self.retry_delays_s or any(d <= 0 for d in self.retry_delays_s):
            raise ValueError("BILLING_RETRY_DELAYS_S must be positive seconds")
        if self.storage_backend == "bunny" and not (
            self.bunny_storage_zone and self.bunny_access_key.get_secret_value()
        ):
            raise ValueError(
                "BILLING_STORAGE_BACKEND=bunny needs BILLING_BUNNY_STORAGE_ZONE and "
                "BILLING_BUNNY_ACCESS_KEY"
            )
        if self.seller_gstin[:2] != self.seller_state_code:
            raise ValueError("BILLING_SELLER_GSTIN must start with BILLING_SELLER_STATE_CODE")
        if self.invoice_series == self.credit_note_series:
            raise ValueError("invoices and credit notes need different number series")
        if self.topup_min_paise > self.topup_max_paise:
            raise ValueError("BILLING_TOPUP_MIN_PAISE exceeds BILLING_TOPUP_MAX_PAISE")
        if self.sponsorship_min_paise > self.sponsorship_max_paise:
            raise ValueError("BILLING_SPONSORSHIP_MIN_PAISE exceeds BILLING_SPONSORSHIP_MAX_PAISE")
        if self.notify_webhook_url and not (
            self.notify_webhook_secret and self.notify_webhook_secret.get_secret_value()
        ):
            raise ValueError("BILLING_NOTIFY_WEBHOOK_URL needs BILLING_NOTIFY_WEBHOOK_SECRET")
        if (self.smtp_user is None) != (self.smtp_password is None):
            # One without the other: the login would be skipped without a word.
            raise ValueError("BILLING_SMTP_USER and BILLING_SMTP_PASSWORD go together")
        _check_mongodb_url(self.mongodb_url.get_secret_value())
        _check_redis_url(self.redis_url.get_secret_value())
        _check_networks("BILLING_WEBHOOK_ALLOWED_IPS", self.webhook_allowed_ips)
        _check_networks("BILLING_TRUSTED_PROXIES", self.trusted_proxies)
        _check_jwks_url(self.jwt_jwks_url, production=self.env is Environment.production)
        _check_origins(self.cors_origins, https=self.env is Environment.production)
        if self.env is not Environment.production:
            return self
        if self.dev_jwt_key_file:
            raise ValueError("BILLING_DEV_JWT_KEY_FILE is for development, not production")
        if self.fault_crash_after_commit:
            raise ValueError("BILLING_FAULT_CRASH_AFTER_COMMIT is for tests, not production")
        for name, token in (
            ("METRICS_TOKEN", self.metrics_token),
            ("CSRF_SECRET", self.csrf_secret),
        ):
            if token is not None and len(token.get_secret_value()) < 32:
                raise ValueError(
                    f"BILLING_{name} must be a random secret of at least 32 characters in "
                    "production"
                )
        if self.smtp_password is not None and not self.smtp_starttls:
            raise ValueError("BILLING_SMTP_PASSWORD is never sent without STARTTLS in production")
        if self.notify_webhook_url and not self.notify_webhook_url.startswith("https://"):
            raise ValueError("BILLING_NOTIFY_WEBHOOK_URL must use https in production")
        if self.notify_webhook_secret and len(self.notify_webhook_secret.get_secret_value()) < 32:
            raise ValueError(
                "BILLING_NOTIFY_WEBHOOK_SECRET must be a random secret of at least 32 "
                "characters in production"
            )
        if self.smtp_host is not None:
            # Receipts, checkout links and names never cross a network in the clear; a
            # relay on this host (a local MTA) is the one exception.
            local = self.smtp_host.startswith(("127.", "localhost", "[::1]"))
            if not self.smtp_starttls and not local:
                raise ValueError("BILLING_SMTP_STARTTLS must be on in production")
            if self.smtp_from.rstrip(">").endswith(".invalid"):
                raise ValueError("BILLING_SMTP_FROM must be set to our sender in production")
        for name, url in (
            ("DATABASE_URL", self.database_url),
            ("DATABASE_DIRECT_URL", self.direct_url),
        ):
            host = url.split("@")[-1]
            local = host.startswith(("127.", "localhost", "[::1]"))
            if not local and "sslmode=require" not in url and "sslmode=verify" not in url:
                raise ValueError(f"BILLING_{name} must use sslmode=require in production")
        if _plaintext_remote_redis(self.redis_url.get_secret_value()):
            raise ValueError("BILLING_REDIS_URL must use TLS (rediss://) in production")
        if _plaintext_remote_mongodb(self.mongodb_url.get_secret_value()):
            raise ValueError(
                "BILLING_MONGODB_URL must use TLS in production (mongodb+srv://, or tls=true)"
            )
        if self.mandate_authorize_url and not self.mandate_authorize_url.startswith("https://"):
            raise ValueError("BILLING_MANDATE_AUTHORIZE_URL must use https in production")
        if self.seller_gstin == DEV_SELLER_GSTIN:
            raise ValueError("BILLING_SELLER_GSTIN must be set to our GSTIN in production")
        if self.cashfree_client_secret.get_secret_value() == DEV_CASHFREE_SECRET:
            raise ValueError("BILLING_CASHFREE_CLIENT_SECRET must be set in production")
        for name, url in (
            ("CASHFREE_BASE_URL", self.cashfree_base_url),
            ("CASHFREE_PAYOUT_BASE_URL", self.cashfree_payout_base_url),
            ("CASHFREE_VERIFICATION_BASE_URL", self.cashfree_verification_base_url),
            ("PUBLIC_BASE_URL", self.public_base_url),
        ):
            if not url.startswith("https://"):
                raise ValueError(f"BILLING_{name} must be https in production")
        # Checked last: production verifies RS256 against CommDesk's keys only (HS256 and
        # its shared secret are refused there, so BILLING_JWT_SECRET is not needed).
        if self.jwt_jwks_url is None:
            raise ValueError("BILLING_JWT_JWKS_URL must be set in production (RS256 tokens)")
        return self


def _check_jwks_url(url: str | None, *, production: bool) -> None:
    if url is None:
        return
    parsed = urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return
    if production:
        raise ValueError("BILLING_JWT_JWKS_URL must be https in production")
    host = (parsed.hostname or "").lower()
    if host == "localhost" or _loopback(host):
        return
    raise ValueError("BILLING_JWT_JWKS_URL must be https (plain http only to a loopback address)")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_networks(name: str, values: tuple[str, ...]) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(f"{name}: {value!r} is not an IP address or network") from exc


def _check_origins(origins: tuple[str, ...], *, https: bool) -> None:
    # An origin is compared as a whole string with the browser's Origin header: it must be
    # exactly scheme://host[:port], never a wildcard or "null" (sandboxed documents).
    for origin in origins:
        parts = urlsplit(origin)
        shaped = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and not parts.path
            and not parts.query
            and not parts.fragment
            and parts.username is None
            and origin == f"{parts.scheme}://{parts.netloc}"
            and origin == origin.lower()
        )
        if not shaped:
            raise ValueError(
                f"BILLING_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], "
                "lower case, no path)"
            )
        if https and parts.scheme != "https":
            raise ValueError("BILLING_CORS_ORIGINS must be https origins in production")


def _check_mongodb_url(url: str) -> None:
    # Only the shape: PyMongo parses the rest when the client is made, and a `+srv` name is
    # resolved (DNS) when it first connects, never here. The URL is never echoed back: it
    # may carry a password.
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("BILLING_MONGODB_URL must start with mongodb:// or mongodb+srv://")
    if len(url) > 4096 or not url.isprintable() or any(c.isspace() for c in url):
        raise ValueError("BILLING_MONGODB_URL must be one line of visible characters")
    if not mongodb_hosts(url):
        raise ValueError("BILLING_MONGODB_URL names no host")


def mongodb_hosts(url: str) -> list[str]:
    """The `host[:port]` entries of a MongoDB URL, without credentials, path or options."""
    hosts = url.split("://", 1)[-1].split("?", 1)[0].split("/", 1)[0].rpartition("@")[2]
    return [h for h in hosts.split(",") if h]


def _check_redis_url(url: str) -> None:
    parsed = urlsplit(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError("BILLING_REDIS_URL must be redis://host[:port][/db] or rediss://")


def _plaintext_remote_redis(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    local = host in ("localhost", "::1") or host.startswith("127.")
    return url.startswith("redis://") and not local


def _plaintext_remote_mongodb(url: str) -> bool:
    # `mongodb+srv://` turns TLS on by default (Atlas); `mongodb://` only with tls/ssl=true.
    if not url.startswith("mongodb://"):
        return False
    options = url.split("?", 1)[1].lower().split("&") if "?" in url else []
    if "tls=true" in options or "ssl=true" in options:
        return False
    local = ("127.", "localhost", "[::1]", "%2f")
    return not all(h.lower().startswith(local) for h in mongodb_hosts(url))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
