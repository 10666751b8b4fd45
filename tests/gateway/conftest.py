"""The sandbox's session server, webhook receiver and Payouts control client, for the gateway's
own tests too (the client tests run against the same sandbox the sandbox tests check)."""

from tests.gateway.sandbox.conftest import payouts, receiver, sandbox_url

__all__ = ["payouts", "receiver", "sandbox_url"]
