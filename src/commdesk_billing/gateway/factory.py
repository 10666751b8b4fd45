"""The one place a Cashfree client (PG, Payouts, Subscriptions) is built from configuration."""

from __future__ import annotations

from commdesk_billing.config import Settings
from commdesk_billing.gateway.backoff import Recorder
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.payouts import CashfreePayoutsClient
from commdesk_billing.gateway.subscriptions import SubscriptionsClient

# Payouts' 429s back off payout work only, never PG's syncs (`gateway_backoff` row).
PAYOUTS_GATEWAY = "cashfree_payouts"


def cashfree_client(settings: Settings) -> CashfreeClient:
    """A client for our processes (the API, each worker's processors): it sleeps at most
    `BILLING_CASHFREE_RATE_LIMIT_WAIT_S` (0 by default) on a 429 and records every 429 as the
    back-off the sync jobs honour."""
    return CashfreeClient(
        base_url=settings.cashfree_base_url,
        client_id=settings.cashfree_client_id,
        client_secret=settings.cashfree_client_secret.get_secret_value(),
        api_version=settings.cashfree_api_version,
        timeout_s=settings.cashfree_timeout_s,
        max_retries=settings.cashfree_max_retries,
        max_rate_limit_wait_s=settings.cashfree_rate_limit_wait_s,
        rate_limit_sink=Recorder(settings),
    )


def payouts_client(settings: Settings) -> CashfreePayoutsClient:
    """A Payouts client for our processes, on the same rate-limit terms as the PG one. Refuses
    to be built without `BILLING_CASHFREE_PAYOUT_CLIENT_ID` / `_SECRET`: there is no default
    pair, and the default base URL is production's."""
    secret = settings.cashfree_payout_client_secret
    if not settings.cashfree_payout_client_id or secret is None:
        raise ValueError(
            "BILLING_CASHFREE_PAYOUT_CLIENT_ID and BILLING_CASHFREE_PAYOUT_CLIENT_SECRET are "
            "needed for Cashfree Payouts"
        )
    return CashfreePayoutsClient(
        base_url=settings.cashfree_payout_base_url,
        verification_base_url=settings.cashfree_verification_base_url,
        client_id=settings.cashfree_payout_client_id,
        client_secret=secret.get_secret_value(),
        api_version=settings.cashfree_payout_api_version,
        timeout_s=settings.cashfree_payout_timeout_s,
        max_retries=settings.cashfree_payout_max_retries,
        max_rate_limit_wait_s=settings.cashfree_rate_limit_wait_s,
        rate_limit_sink=Recorder(settings, gateway=PAYOUTS_GATEWAY),
    )


def subscriptions_client(settings: Settings) -> SubscriptionsClient:
    """A Subscriptions client for our processes: the PG app's base URL and keys, on the same
    rate-limit terms as the PG client (its 429s are PG's: one app, one limit). Its API version
    stays pinned at 2025-01-01 (`subscriptions.py`), whatever PG's is."""
    return SubscriptionsClient(
        base_url=settings.cashfree_base_url,
        client_id=settings.cashfree_client_id,
        client_secret=settings.cashfree_client_secret.get_secret_value(),
        timeout_s=settings.cashfree_timeout_s,
        max_retries=settings.cashfree_max_retries,
        max_rate_limit_wait_s=settings.cashfree_rate_limit_wait_s,
        rate_limit_sink=Recorder(settings),
    )
