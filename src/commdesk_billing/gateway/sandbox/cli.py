"""`sandbox`: run the local Cashfree sandbox, PG (with Subscriptions) and Payouts (a click
command for the main CLI to register).

Every option left out falls back to its `BILLING_SANDBOX_*` variable, then the default.
"""

from __future__ import annotations

from typing import Any

import click
import uvicorn
from pydantic import ValidationError

from commdesk_billing.gateway.sandbox.app import create_sandbox_app
from commdesk_billing.gateway.sandbox.checkout import CHECKOUT_PATH
from commdesk_billing.gateway.sandbox.config import SandboxConfig
from commdesk_billing.gateway.sandbox.subscriptions.page import AUTHORIZE_PATH
from commdesk_billing.telemetry.logging import configure as configure_logging


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--public-url", default=None, help="Base URL for links it hands out.")
@click.option("--settle-delay", "settle_delay_s", type=float, help="Seconds until a payment ends.")
@click.option("--refund-delay", "refund_delay_s", type=float, help="Seconds until a refund ends.")
@click.option("--webhook-url", default=None, help="Also notified of every event.")
@click.option("--payout-webhook-url", default=None, help="Notified of every transfer event.")
@click.option(
    "--subscription-webhook-url", default=None, help="Notified of every subscription event."
)
@click.option(
    "--payout-step", "payout_step_s", type=float, help="Seconds between a transfer's steps."
)
@click.option(
    "--webhook-retries",
    "webhook_retry_schedule_s",
    default=None,
    help='Waits before each webhook retry, e.g. "120,600,1800".',
)
@click.option(
    "--rate-limits",
    "rate_limit_profile",
    type=click.Choice(["sandbox", "production", "off"]),
    default=None,
)
@click.option("--rate-multiplier", "rate_limit_multiplier", type=float, default=None)
@click.option("--latency-ms", type=int, default=None, help="Added to every API call.")
@click.option("--error-rate", type=float, default=None, help="Share of API calls answered 500.")
@click.option("--webhook-drop-rate", type=float, default=None)
@click.option("--webhook-duplicates", type=int, default=None)
@click.option("--webhook-reorder-window-ms", type=int, default=None)
@click.option("--webhook-jitter-ms", type=int, default=None)
@click.option("--seed", type=int, default=None, help="Fixes the fault dice.")
def sandbox(host: str, port: int, **options: Any) -> None:
    """A local Cashfree sandbox on HOST:PORT (in memory: a restart forgets every order and
    transfer)."""
    given = {name: value for name, value in options.items() if value is not None}
    try:
        config = SandboxConfig(**given)
    except ValidationError as exc:
        raise click.ClickException(f"sandbox configuration is not valid:\n{exc}") from exc
    base = config.public_url or f"http://{host}:{port}"
    click.echo(f"Cashfree sandbox: API {base}/pg, checkout {base}{CHECKOUT_PATH}", err=True)
    click.echo(
        f"Subscriptions {base}/pg/subscriptions, mandate page {base}{AUTHORIZE_PATH}", err=True
    )
    click.echo(f"Payouts {base}/payout, verification {base}/verification", err=True)
    click.echo(
        f"client id {config.client_id}, payouts client id {config.payout_client_id}, "
        f"rate limits {config.rate_limit_profile}",
        err=True,
    )
    # JSON lines labelled service=sandbox, like the other processes' (uvicorn's own included).
    configure_logging("WARNING", service="sandbox")
    uvicorn.run(
        create_sandbox_app(config), host=host, port=port, log_level="warning", log_config=None
    )
