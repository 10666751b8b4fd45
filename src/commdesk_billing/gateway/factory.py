"""The one place a Cashfree client is built from configuration."""

from __future__ import annotations

from commdesk_billing.config import Settings
from commdesk_billing.gateway.backoff import Recorder
from commdesk_billing.gateway.client import CashfreeClient


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
