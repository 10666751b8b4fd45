"""A stack of the mandates' own (its sandbox's clock is moved by days: on the shared stack that
would put every later test's order expiry in the sandbox's past), with the sandbox's
Subscriptions webhooks pointed at our receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from commdesk_billing.gateway.factory import subscriptions_client
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from tests.harness.stack import FAULTS_OFF, Stack, StackFactory

SUBS_HOOK = "/v1/webhooks/cashfree/subscriptions"


@pytest.fixture(scope="session")
async def mandate_stack(stack_factory: StackFactory) -> Stack:
    return await stack_factory()


@pytest.fixture
async def subs(mandate_stack: Stack) -> AsyncIterator[Stack]:
    r = await mandate_stack.sandbox.patch(
        "/_sandbox/subscriptions/settings",
        json={"webhook_url": mandate_stack.api_url + SUBS_HOOK},
    )
    assert r.status_code == 200, r.text
    await mandate_stack.faults(**FAULTS_OFF)
    yield mandate_stack


@pytest.fixture
async def subs_client(mandate_stack: Stack) -> AsyncIterator[SubscriptionsClient]:
    async with subscriptions_client(mandate_stack.settings) as client:
        yield client
