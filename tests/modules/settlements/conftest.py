"""A stack of the settlements' own (its sandbox's Payouts clock and fault switches are moved
by these tests only), with the deduction rates, reserve and fee finance would set."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from commdesk_billing.config import Settings
from commdesk_billing.gateway.sandbox.config import DEV_PAYOUT_CLIENT_ID, DEV_PAYOUT_CLIENT_SECRET
from commdesk_billing.modules.communities.directory import CommunityDirectory
from tests.gateway.sandbox.conftest import sandbox_url
from tests.harness.stack import Stack, StackFactory
from tests.modules.payees.helpers import payout_settings
from tests.modules.settlements.helpers import Payouts, directory

__all__ = ["sandbox_url"]

# 10 % reserve, 1 % TDS, 0.5 % TCS, a ₹1.18 fee (Cashfree's charge passed on).
TERMS = {
    "settlement_reserve_bps": 1000,
    "settlement_reserve_days": 7,
    "settlement_tds_bps": 100,
    "settlement_tcs_bps": 50,
    "payout_fee_paise": 118,
    "settlement_minimum_paise": 10_000,
    "settlement_retry_after_s": 0.0,
    "settlement_sync_after_s": 1.0,
}
PAYOUT_STEP_S = 3600.0  # transfers move only when a test moves the sandbox's clock


@pytest.fixture(scope="session")
def payee_settings(settings: Settings, sandbox_url: str) -> Settings:
    """The suite's settings with Payouts pointed at the session's sandbox: where the tests
    without a stack of their own verify their payees' accounts and add their beneficiaries
    (no transfer is ever sent there: no worker runs on their databases)."""
    return payout_settings(settings, sandbox_url)


@pytest.fixture
async def communities(settings: Settings) -> AsyncIterator[CommunityDirectory]:
    """A directory on the run's MongoDB, as the scheduler and the worker build theirs."""
    async with directory(settings) as made:
        yield made


@pytest.fixture(scope="module")
async def settle_stack(stack_factory: StackFactory) -> Stack:
    return await stack_factory(**TERMS)


@pytest.fixture
async def payouts(settle_stack: Stack) -> AsyncIterator[Payouts]:
    async with httpx.AsyncClient(
        base_url=settle_stack.sandbox_url,
        timeout=30,
        headers={"x-client-id": DEV_PAYOUT_CLIENT_ID, "x-client-secret": DEV_PAYOUT_CLIENT_SECRET},
    ) as client:
        control = Payouts(client)
        reset = {
            "pending_extra_s": 0,
            "fail_transfers": 0,
            "reverse_transfers": 0,
            "webhook_drop_rate": 0.0,
            "webhook_duplicates": 1,
        }
        await control.faults(**reset)
        await control.configure(
            webhook_url=f"{settle_stack.api_url}/v1/webhooks/cashfree-payouts",
            step_s=PAYOUT_STEP_S,
            pending_s=PAYOUT_STEP_S,
            reversal_s=PAYOUT_STEP_S,
        )
        yield control
        await control.faults(**reset)
