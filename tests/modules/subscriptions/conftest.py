"""INR subscriptions' tests each get a stack of their own (sandbox + API + worker): each moves
its sandbox's clock by weeks, which would put any other test's charges in its past."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from commdesk_billing.gateway.factory import subscriptions_client
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from tests.harness.stack import FAULTS_OFF, Stack, StackFactory

SUBS_HOOK = "/v1/webhooks/cashfree/subscriptions"


@pytest.fixture
async def inr(stacks: StackFactory) -> AsyncIterator[Stack]:
    stack = await stacks()
    r = await stack.sandbox.patch(
        "/_sandbox/subscriptions/settings", json={"webhook_url": stack.api_url + SUBS_HOOK}
    )
    assert r.status_code == 200, r.text
    await stack.faults(**FAULTS_OFF)
    yield stack


@pytest.fixture
async def inr_client(inr: Stack) -> AsyncIterator[SubscriptionsClient]:
    async with subscriptions_client(inr.settings) as client:
        yield client
