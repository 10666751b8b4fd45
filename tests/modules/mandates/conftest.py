"""The shared stack with the sandbox's Subscriptions webhooks pointed at our receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from commdesk_billing.gateway.factory import subscriptions_client
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from tests.harness.stack import Stack

SUBS_HOOK = "/v1/webhooks/cashfree/subscriptions"


@pytest.fixture
async def subs(stack: Stack) -> AsyncIterator[Stack]:
    r = await stack.sandbox.patch(
        "/_sandbox/subscriptions/settings", json={"webhook_url": stack.api_url + SUBS_HOOK}
    )
    assert r.status_code == 200, r.text
    yield stack


@pytest.fixture
async def subs_client(stack: Stack) -> AsyncIterator[SubscriptionsClient]:
    async with subscriptions_client(stack.settings) as client:
        yield client
