"""`python -m commdesk_billing.gateway.sandbox`: the same as `commdesk-billing sandbox`."""

from commdesk_billing.gateway.sandbox.cli import sandbox

sandbox(prog_name="python -m commdesk_billing.gateway.sandbox")
