"""A local Cashfree PG sandbox: the same wire format as Cashfree's, in memory, with faults on
demand. See README.md in this folder."""

from commdesk_billing.gateway.sandbox.app import create_sandbox_app
from commdesk_billing.gateway.sandbox.checkout import checkout_url
from commdesk_billing.gateway.sandbox.config import Faults, SandboxConfig

__all__ = ["Faults", "SandboxConfig", "checkout_url", "create_sandbox_app"]
