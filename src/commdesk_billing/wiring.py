"""The composition root: the one place that knows every domain.

It holds the tables that tie the domains to the infrastructure:
  - ROUTES, (queue, message type) → the handler that consumes it there. A message is only
    ever published to a queue where it is routed (`outbox.send` refuses anything else,
    `outbox.announce` fans an event out to exactly the queues routed for it), so no queue
    fills with messages nothing reads. `fanout()` is the resulting event → queues table.
  - the scheduler's jobs.
  - the checks `ledger verify` runs, each owned by a module's `invariants.py`
    (`verify_checks`).
Infrastructure packages (`queues/`, `db/`, `security/`, `gateway/`, `storage/`,
`telemetry/`) import nothing from `modules/`; the processes (`app`, `cli`, the tests) are
put together here. A new domain adds its handlers and jobs to these tables and nothing
else outside its own folder.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.gateway.factory import cashfree_client, payouts_client, subscriptions_client
from commdesk_billing.idempotency.keys import prune_expired as prune_idempotency_keys
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.metrics_snapshot import MetricsSnapshot
from commdesk_billing.modules.analytics import rollups as analytics_rollups
from commdesk_billing.modules.analytics.activity import CommunityActivity
from commdesk_billing.modules.analytics.consumers import AnalyticsRollups
from commdesk_billing.modules.autorecharge import invariants as auto_recharge_invariants
from commdesk_billing.modules.autorecharge import outcomes as auto_recharge_outcomes
from commdesk_billing.modules.autorecharge import predict as auto_recharge_levels
from commdesk_billing.modules.autorecharge.consumers import (
    AutoRechargeRequests,
    ChargeFailed,
    concerns,
    handle_charge_notified,
    handle_credited,
)
from commdesk_billing.modules.autorecharge.trigger import on_crossing
from commdesk_billing.modules.communities import invariants as community_invariants
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.modules.events import vocabulary as public_events
from commdesk_billing.modules.events.consumers import OutboundEvents
from commdesk_billing.modules.events.jobs import deliver_due as deliver_webhooks
from commdesk_billing.modules.fraud import invariants as fraud_invariants
from commdesk_billing.modules.fraud import reviews as fraud_reviews
from commdesk_billing.modules.invoices import invariants as invoice_invariants
from commdesk_billing.modules.invoices.consumers import InvoiceGeneration, PdfRendering
from commdesk_billing.modules.invoices.jobs import render_pending
from commdesk_billing.modules.ledger import invariants as ledger_invariants
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import Check
from commdesk_billing.modules.mandates.consumers import ChargeWebhook, MandateRefresh
from commdesk_billing.modules.mandates.jobs import sync_open_mandates
from commdesk_billing.modules.notifications.consumers import BillingNotifications
from commdesk_billing.modules.notifications.jobs import deliver_due as deliver_notifications
from commdesk_billing.modules.partners import invariants as partner_invariants
from commdesk_billing.modules.payees import invariants as payee_invariants
from commdesk_billing.modules.payments.consumers import PaidPayments, PaymentProcessing
from commdesk_billing.modules.payments.jobs import sync_open_payments
from commdesk_billing.modules.reconciliation import runner as reconciliation
from commdesk_billing.modules.reconciliation.jobs import InBackground
from commdesk_billing.modules.refunds import invariants as refund_invariants
from commdesk_billing.modules.refunds.consumers import RefundProcessing, SubscriptionRefundWebhook
from commdesk_billing.modules.refunds.jobs import sync_open_refunds
from commdesk_billing.modules.reviews.consumers import FraudDetection
from commdesk_billing.modules.settlements import invariants as settlement_invariants
from commdesk_billing.modules.settlements.consumers import SettlementProcessing
from commdesk_billing.modules.settlements.jobs import settle_period, sync_open_settlements
from commdesk_billing.modules.splits import invariants as split_invariants
from commdesk_billing.modules.splits import service as splits
from commdesk_billing.modules.sponsorships import invariants as sponsorship_invariants
from commdesk_billing.modules.sponsorships import service as sponsorships
from commdesk_billing.modules.subscriptions import invariants as subscription_invariants
from commdesk_billing.modules.subscriptions import paid as subscription_paid
from commdesk_billing.modules.subscriptions.jobs import renew_subscriptions
from commdesk_billing.modules.usage import invariants as usage_invariants
from commdesk_billing.modules.usage.consumers import owes_on_credit, repay_debts
from commdesk_billing.modules.wallet import invariants as wallet_invariants
from commdesk_billing.modules.wallet import triggers as wallet_triggers
from commdesk_billing.modules.wallet.consumers import handle_credit, handle_debit, handle_debits
from commdesk_billing.modules.wallet.jobs import expire_holds, expire_lots
from commdesk_billing.modules.webhooks.consumers import PaymentWebhook, RefundWebhook
from commdesk_billing.queues import routing
from commdesk_billing.queues.outbox import prune
from commdesk_billing.queues.runtime import BatchHandler, Handler
from commdesk_billing.queues.scheduler import Job
from commdesk_billing.queues.worker import Worker
from commdesk_billing.storage.factory import document_store

Route = tuple[str, str]

# Each kind of handler, built once per worker process (`handlers`); kinds that wrap
# another share its instance, and so its Cashfree client.
HANDLER_KINDS = (
    "payment_truth",
    "payment_webhook",
    "paid_payment_credit",
    "wallet_credit",
    "wallet_debit",
    "refund_processing",
    "refund_webhook",
    "tax_documents",
    "tax_document_pdfs",
    "settlement_processing",
    "auto_recharge_request",
    "auto_recharge_credited",
    "auto_recharge_charge_notified",
    "auto_recharge_charge_failed",
    "usage_debt_repayment",
    "billing_notifications",
    "mandate_refresh",
    "mandate_charge_webhook",
    "fraud_detection",
    "refund_subscription_webhook",
    "analytics_rollups",
    "outbound_events",
)


def _build_kinds(settings: Settings) -> dict[str, Handler]:
    # A charge on a mandate is verified on the Subscriptions API (same app, same keys).
    payment_truth = PaymentProcessing(
        cashfree_client(settings), settings, subscriptions_client(settings)
    )
    refund_processing = RefundProcessing(cashfree_client(settings), subscriptions_client(settings))
    return {
        "payment_truth": payment_truth,
        "payment_webhook": PaymentWebhook(payment_truth),
        # A paid purchase's credits are granted; a paid payment of another kind is handed
        # to the module that opened it (payments imports none of them).
        "paid_payment_credit": PaidPayments(
            {
                sponsorships.KIND: sponsorships.on_paid,
                subscription_paid.KIND: subscription_paid.on_paid,
            }
        ),
        "wallet_credit": handle_credit,
        "wallet_debit": handle_debit,
        "refund_processing": refund_processing,
        "refund_webhook": RefundWebhook(refund_processing),
        "refund_subscription_webhook": SubscriptionRefundWebhook(refund_processing),
        "tax_documents": InvoiceGeneration(settings),
        "tax_document_pdfs": PdfRendering(document_store(settings)),
        # Its Payouts client is built on first use: a worker without the Payouts pair
        # still serves every other queue.
        # So is its community directory (a community's status is asked before each transfer).
        "settlement_processing": SettlementProcessing(
            settings, lambda: payouts_client(settings), lambda: community_directory(settings)
        ),
        # Opens the member's order (or charges their mandate) in transactions of its own
        # (as a person's order is): a small engine and the Cashfree clients, each built on
        # first use.
        "auto_recharge_request": AutoRechargeRequests(
            settings,
            lambda: cashfree_client(settings),
            lambda: make_engine(settings, pool_size=1),
            lambda: subscriptions_client(settings),
        ),
        "auto_recharge_credited": handle_credited,
        "auto_recharge_charge_notified": handle_charge_notified,
        "auto_recharge_charge_failed": ChargeFailed(settings),
        "usage_debt_repayment": repay_debts,
        "billing_notifications": BillingNotifications(),
        "mandate_refresh": MandateRefresh(subscriptions_client(settings)),
        "mandate_charge_webhook": ChargeWebhook(payment_truth),
        # A credited purchase scored again with its UPI VPA / card (Cashfree's payment
        # details); velocity in Redis, SQL when Redis cannot answer.
        "fraud_detection": FraudDetection(
            cashfree_client(settings), settings, RedisStore.from_settings(settings)
        ),
        # Recomputes the rollup buckets of the days an event touched (and their
        # communities' activity in MongoDB, its client built on first use).
        "analytics_rollups": AnalyticsRollups(settings),
        "outbound_events": OutboundEvents(settings),
    }


ROUTES: dict[Route, str] = {
    # Buying credits: Cashfree's webhook and the sync ask Cashfree for the truth…
    ("payment.processing", "payment.webhook"): "payment_webhook",
    ("payment.processing", "payment.sync"): "payment_truth",
    # …and a paid order's credits are granted from its payment row (a sponsorship's payment
    # funds its escrow instead).
    ("wallet.credit", "payment.paid"): "paid_payment_credit",
    # Grants and debits other CommDesk services send as messages. Their producers should
    # name the `.requested` types; any other type is taken the same way (as it always was).
    ("wallet.credit", "wallet.credit.requested"): "wallet_credit",
    ("wallet.credit", routing.ANY_TYPE): "wallet_credit",
    ("wallet.debit", "wallet.debit.requested"): "wallet_debit",
    ("wallet.debit", routing.ANY_TYPE): "wallet_debit",
    # Refunds: created at Cashfree, then settled by its webhook or the sync.
    ("refund.processing", "refund.requested"): "refund_processing",
    ("refund.processing", "refund.webhook"): "refund_webhook",
    ("refund.processing", "refund.sync"): "refund_processing",
    # Cashfree Subscriptions' SUBSCRIPTION_REFUND_STATUS (a mandate debit's refund).
    ("refund.processing", "refund.subscription_webhook"): "refund_subscription_webhook",
    # Tax documents: the invoice of a credited purchase, the credit note of a refund…
    ("invoice.generate", "payment.credited"): "tax_documents",
    ("invoice.generate", "refund.succeeded"): "tax_documents",
    # …and their PDFs, drawn on a queue of their own (off the purchase's path, counted
    # apart). Render messages written before that split still reach invoice.generate.
    ("invoice.render", "invoice.render"): "tax_document_pdfs",
    ("invoice.generate", "invoice.render"): "tax_document_pdfs",
    # Settlements: the transfer sent after the settlement's commit (and again, under a new
    # transfer_id, after a retryable failure), then Cashfree asked after a payout webhook
    # or by the status sync. One state machine (`settlements/transfers.py`) for all four.
    ("settlements.processing", "settlement.transfer"): "settlement_processing",
    ("settlements.processing", "settlement.webhook"): "settlement_processing",
    ("settlements.processing", "settlement.sync"): "settlement_processing",
    # Auto-recharge: the request a crossing wrote (guards, then the member's order), and a
    # recharge's payment credited (it succeeded; only payments auto-recharge opened are
    # sent here: CONDITIONS).
    ("payment.processing", "auto_recharge.requested"): "auto_recharge_request",
    ("payment.processing", "payment.credited"): "auto_recharge_credited",
    # …and, charged on a mandate, Cashfree's pre-debit notice (notified) and the charge's
    # end unpaid (failed at once: back-off, disabled after N).
    ("payment.processing", "mandate_charge.notified"): "auto_recharge_charge_notified",
    ("payment.processing", "mandate_charge.failed"): "auto_recharge_charge_failed",
    # Usage metering: credits arrived in a wallet, so its usage debt (an overdraft meter's
    # unpaid usage) is repaid from them (sent only when the wallet owes: CONDITIONS).
    ("wallet.credit", "payment.credited"): "usage_debt_repayment",
    # …and credits made available another way (a fraud review's release of held credits, a
    # grant: `wallet/available.py`), which no `payment.credited` announces.
    ("wallet.credit", "wallet.credits_available"): "usage_debt_repayment",
    # Billing notifications: each event becomes deliveries (notifications/catalog.py has
    # one entry per type routed here), which the scheduler's deliver_notifications sends
    # by email and to CommDesk's notification webhook.
    ("notifications.billing", "payment.credited"): "billing_notifications",
    ("notifications.billing", "refund.succeeded"): "billing_notifications",
    ("notifications.billing", "settlement.paid"): "billing_notifications",
    ("notifications.billing", "settlement.failed"): "billing_notifications",
    ("notifications.billing", "settlement.reversed"): "billing_notifications",
    ("notifications.billing", "wallet.low_balance"): "billing_notifications",
    ("notifications.billing", "auto_recharge.checkout_opened"): "billing_notifications",
    ("notifications.billing", "auto_recharge.notified"): "billing_notifications",
    ("notifications.billing", "auto_recharge.succeeded"): "billing_notifications",
    ("notifications.billing", "auto_recharge.failed"): "billing_notifications",
    ("notifications.billing", "auto_recharge.disabled"): "billing_notifications",
    ("notifications.billing", "mandate.status_changed"): "billing_notifications",
    ("notifications.billing", "subscription.renewed"): "billing_notifications",
    ("notifications.billing", "subscription.renewal_failed"): "billing_notifications",
    ("notifications.billing", "subscription.cancelled"): "billing_notifications",
    # Mandates (Cashfree Subscriptions): a mandate's status asked of Cashfree after a signed
    # webhook, a member's revoke or by the sync; a charge's subscription payment webhook
    # makes the payments consumer ask the subscription payment API (then `payment.paid`).
    ("payment.processing", "mandate.refresh"): "mandate_refresh",
    ("payment.processing", "mandate.charge.webhook"): "mandate_charge_webhook",
    # Fraud: a credited purchase is scored again with the instrument it was paid with; a
    # high score puts its credits under review (held until a reviewer decides).
    ("fraud.detection", "payment.credited"): "fraud_detection",
    # Analytics: each event that moved money recomputes the rollups of its days (a bucket
    # is recomputed whole, so a repeat counts nothing twice); the scheduler's
    # analytics_refresh job catches what no event announces (failed orders, fraud events).
    ("analytics.billing", "payment.credited"): "analytics_rollups",
    ("analytics.billing", "refund.succeeded"): "analytics_rollups",
    ("analytics.billing", "settlement.paid"): "analytics_rollups",
    ("analytics.billing", "settlement.failed"): "analytics_rollups",
    ("analytics.billing", "settlement.reversed"): "analytics_rollups",
    ("analytics.billing", "auto_recharge.succeeded"): "analytics_rollups",
    ("analytics.billing", "auto_recharge.failed"): "analytics_rollups",
    # Events out: every money event a client is told of becomes its public events and
    # their deliveries to the registered webhook endpoints (modules/events/vocabulary.py;
    # the scheduler's deliver_webhooks sends them).
    **{("webhooks.outbound", t): "outbound_events" for t in public_events.INTERNAL_TYPES},
}

# Queues consumed in batches (several messages in one transaction); each also has its
# single handler in ROUTES, used when a batch fails as a whole.
BATCH_ROUTES: dict[Route, BatchHandler] = {
    ("wallet.debit", "wallet.debit.requested"): handle_debits,
    ("wallet.debit", routing.ANY_TYPE): handle_debits,
}

# Routes whose handler acts on few of their type's events: `outbox.announce` asks the
# condition in the publisher's transaction and writes no message where it says no (each
# answers yes when unsure). A credited purchase that is no recharge's, to a wallet with no
# usage debt, costs neither queue a message nor a consumer transaction; nor do credits made
# available otherwise in such a wallet.
CONDITIONS: dict[Route, routing.Condition] = {
    ("payment.processing", "payment.credited"): concerns,
    ("wallet.credit", "payment.credited"): owes_on_credit,
    ("wallet.credit", "wallet.credits_available"): owes_on_credit,
}

TABLE = routing.Table(frozenset(ROUTES), CONDITIONS)


def install() -> None:
    """Make the routing table known to this process's outbox (every process calls this
    once at start: the API, the worker, the scheduler, the CLI, the tests)."""
    routing.install(TABLE)
    # The debit paths' low-balance seam: auto-recharge's crossing (the wallet imports none
    # of it).
    wallet_triggers.install(on_crossing)
    # Credits a spend hold gives back: fraud's pending reviews of the wallet hold them.
    wallet_triggers.install_credits_back(fraud_reviews.hold_what_came_back)


def fanout() -> dict[str, tuple[str, ...]]:
    """Message type → the queues it is published to."""
    return {t: TABLE.destinations(t) for t in sorted({t for _, t in TABLE.routes})}


def handlers(settings: Settings) -> dict[Route, Handler]:
    """Every route's handler; routes of one kind share one instance (and so one Cashfree
    client or document store)."""
    built = _build_kinds(settings)
    return {route: built[kind] for route, kind in ROUTES.items()}


def worker(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    consumers: bool = True,
    relay: bool = True,
) -> Worker:
    """The worker process's parts: every routed queue's consumer, and the outbox relay."""
    install()
    if not consumers:
        return Worker(settings, handlers={}, relay=relay, engine=engine)
    singles = handlers(settings)
    return Worker(
        settings,
        handlers=routing.per_queue(singles),
        batch_handlers=routing.per_queue_batches(batch_handlers(singles)),
        relay=relay,
        engine=engine,
    )


def batch_handlers(singles: dict[Route, Handler]) -> dict[Route, BatchHandler]:
    """BATCH_ROUTES, and the routes whose handler takes a batch itself (a `many` method:
    the analytics rollups). A batched queue sends every message through its batch handler,
    so each of its routes must have one."""
    batched: dict[Route, BatchHandler] = dict(BATCH_ROUTES)
    for route, handler in singles.items():
        many = getattr(handler, "many", None)
        if many is not None:
            batched[route] = many
    for queue in {q for q, _ in batched}:
        missing = [t for q, t in singles if q == queue and (q, t) not in batched]
        if missing:
            raise RuntimeError(f"{queue} is batched, but not its types {sorted(missing)}")
    return batched


def jobs(settings: Settings, engine: AsyncEngine, communities: CommunityDirectory) -> list[Job]:
    """The scheduler's periodic jobs, run by the leader only. `communities`: the process's
    directory (settlements ask it about community payees); the caller owns and closes it."""
    return [
        Job("expire_holds", 15, lambda: expire_holds(engine)),
        Job("expire_lots", 60, lambda: expire_lots(engine)),
        Job(
            "sync_open_payments",
            settings.payment_sync_every_s,
            lambda: sync_open_payments(engine, settings),
        ),
        Job(
            "sync_open_mandates",
            settings.payment_sync_every_s,
            lambda: sync_open_mandates(engine, settings),
        ),
        Job(
            "sync_open_refunds",
            settings.refund_sync_every_s,
            lambda: sync_open_refunds(engine, settings),
        ),
        # Hourly: a document or PDF is only this late after a dead letter or a long outage.
        Job("render_pending_documents", 3600, lambda: render_pending(engine)),
        Job(
            "settle_payees",
            settings.settlement_run_every_s,
            lambda: settle_period(engine, settings, communities),
        ),
        Job(
            "sync_open_settlements",
            settings.settlement_sync_every_s,
            lambda: sync_open_settlements(engine, settings),
        ),
        Job("seal_ledger", 60, lambda: seal_pending(engine, wait_s=5)),
        # Auto-recharge: each enabled wallet's trigger level from its recent burn, and the
        # pending recharges whose payment ended (credited, failed, expired).
        Job(
            "auto_recharge_levels",
            settings.auto_recharge_predict_every_s,
            lambda: auto_recharge_levels.recompute_levels(engine, settings),
        ),
        Job(
            "auto_recharge_settle",
            settings.auto_recharge_settle_every_s,
            lambda: _settle_auto_recharges(engine, settings),
        ),
        # Sends what the notifications consumer recorded, and retries it with backoff.
        Job(
            "deliver_notifications",
            settings.notification_deliver_every_s,
            lambda: deliver_notifications(engine, settings),
        ),
        # Events out: POSTs the webhook deliveries that are due, and retries them with
        # backoff for days (modules/events/jobs.py).
        Job(
            "deliver_webhooks",
            settings.webhook_deliver_every_s,
            lambda: _deliver_webhooks(engine, settings),
        ),
        # Renewals, dunning retries and grace expiry; each period is charged once whatever
        # runs overlap (subscriptions/renewal.py).
        Job(
            "renew_subscriptions",
            settings.subscription_renew_every_s,
            lambda: renew_subscriptions(engine, settings),
        ),
        # Easy Split vendors still in Cashfree's KYC: their status asked again, so one
        # turns ACTIVE (and takes split sponsorships) without anyone reading it.
        Job(
            "refresh_split_vendors",
            settings.split_vendor_refresh_every_s,
            lambda: _refresh_split_vendors(settings, engine),
        ),
        # Reconciliation, three ways (internal invariants, Cashfree's settlement reports,
        # Payouts' transfers): what differs becomes a finding for finance to explain or
        # resolve; the same mismatch next run is the same finding.
        # In a task of its own: a run may take minutes (reconciliation/jobs.py).
        Job(
            "reconcile",
            settings.reconciliation_every_s,
            InBackground(lambda: reconciliation.run(engine, settings, checks=verify_checks())),
        ),
        # Stored Idempotency-Key answers past their retention (default 24 h).
        Job(
            "prune_idempotency_keys",
            600,
            lambda: prune_idempotency_keys(
                engine, timedelta(seconds=settings.idempotency_retention_s)
            ),
        ),
        # The recent days' rollups recomputed, and any past day not settled yet.
        Job(
            "analytics_refresh",
            settings.analytics_refresh_every_s,
            lambda: _refresh_analytics(engine, settings),
        ),
        # Gauges read from the books and the dependencies (revenue, queue depths, PostgreSQL
        # connections, who answers): metrics_snapshot.py.
        Job(
            "metrics_snapshot",
            settings.metrics_snapshot_every_s,
            MetricsSnapshot(settings, engine).run,
        ),
        Job(
            "prune_outbox_inbox",
            3600,
            lambda: prune(
                engine,
                outbox_retention=timedelta(seconds=settings.outbox_retention_s),
                inbox_retention=timedelta(seconds=settings.inbox_retention_s),
            ),
        ),
    ]


async def _settle_auto_recharges(engine: AsyncEngine, settings: Settings) -> None:
    await auto_recharge_outcomes.settle_pending(engine, settings)
    await auto_recharge_outcomes.retry_due(engine)
    await auto_recharge_outcomes.resend_stale(engine)


async def _refresh_analytics(engine: AsyncEngine, settings: Settings) -> None:
    activity = CommunityActivity(settings)
    try:
        await analytics_rollups.refresh_due(engine, activity)
    finally:
        await activity.aclose()


async def _deliver_webhooks(engine: AsyncEngine, settings: Settings) -> None:
    await deliver_webhooks(engine, settings)


async def _refresh_split_vendors(settings: Settings, engine: AsyncEngine) -> None:
    # A client only when a vendor waits: most runs have none to ask about.
    if await splits.any_waiting(engine):
        async with cashfree_client(settings) as client:
            await splits.refresh_waiting(engine, client)


def verify_checks() -> tuple[Check, ...]:
    """What `ledger verify` runs, in the order of its report: the ledger's books, then the
    wallets', refunds', communities', partners', payees', sponsorships', settlements',
    splits', usage's, subscriptions', auto-recharges' and documents' rules, the seals last."""
    return (
        *ledger_invariants.CHECKS,
        *wallet_invariants.CHECKS,
        *refund_invariants.CHECKS,
        *community_invariants.CHECKS,
        *partner_invariants.CHECKS,
        *payee_invariants.CHECKS,
        *sponsorship_invariants.CHECKS,
        *settlement_invariants.CHECKS,
        *split_invariants.CHECKS,
        *usage_invariants.CHECKS,
        *subscription_invariants.CHECKS,
        *auto_recharge_invariants.CHECKS,
        *invoice_invariants.CHECKS,
        *fraud_invariants.CHECKS,
        *ledger_invariants.SEAL_CHECKS,
    )
