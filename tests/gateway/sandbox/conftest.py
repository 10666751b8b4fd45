"""The sandbox under test, on a real socket, and a real webhook receiver.

Delays are short (settlement 0.2 s, webhook retries 0.2/0.4/0.6 s, a transfer step 0.1 s) and
rate limits off, so the whole module runs in seconds; the rate-limit test starts its own
sandbox.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from commdesk_billing.gateway.sandbox import SandboxConfig, create_sandbox_app
from commdesk_billing.gateway.sandbox.config import PayoutFaults
from tests.gateway.sandbox.servers import Receiver, ServerThread

CLIENT_ID = "TEST_sandbox_suite"
CLIENT_SECRET = "cfsk_ma_test_sandbox_suite_secret"
VERSION = "2025-01-01"
AUTH = {"x-client-id": CLIENT_ID, "x-client-secret": CLIENT_SECRET, "x-api-version": VERSION}
PAYOUT_CLIENT_ID = "TEST_sandbox_suite_payouts"
PAYOUT_CLIENT_SECRET = "cfsk_ma_test_sandbox_suite_payouts_secret"
PAYOUT_VERSION = "2024-01-01"
PAYOUT_AUTH = {
    "x-client-id": PAYOUT_CLIENT_ID,
    "x-client-secret": PAYOUT_CLIENT_SECRET,
    "x-api-version": PAYOUT_VERSION,
}


SETTLE_DELAY_S = 0.2


def sandbox_config(**overrides: Any) -> SandboxConfig:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "settle_delay_s": SETTLE_DELAY_S,
        "refund_delay_s": 0.2,
        "expiry_sweep_s": 0.2,
        "webhook_retry_schedule_s": "0.2,0.4,0.6",
        "webhook_timeout_s": 2.0,
        "rate_limit_profile": "off",
        "seed": 7,
        "payout_client_id": PAYOUT_CLIENT_ID,
        "payout_client_secret": PAYOUT_CLIENT_SECRET,
        "payout_step_s": 0.1,
        "payout_pending_s": 0.5,
        "payout_reversal_s": 0.2,
        "payout_slow_answer_s": 1.0,
        "payout_tick_s": 0.05,
    }
    return SandboxConfig(**(values | overrides))


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = ServerThread(rec.app()).start()
    rec.url = server.url
    yield rec
    server.stop()


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    server = ServerThread(create_sandbox_app(sandbox_config())).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def start_sandbox() -> Iterator[Callable[..., str]]:
    """Another sandbox with its own configuration, stopped at the end of the session."""
    servers: list[ServerThread] = []

    def start(**overrides: Any) -> str:
        server = ServerThread(create_sandbox_app(sandbox_config(**overrides))).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def api(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox_url, headers=AUTH, timeout=10) as client:
        yield client
        # Faults set by a test end with it.
        await client.patch(
            "/_sandbox/faults",
            json={
                "latency_ms": 0,
                "error_rate": 0,
                "webhook_drop_rate": 0,
                "webhook_duplicates": 1,
                "webhook_reorder_window_ms": 0,
                "webhook_jitter_ms": 0,
            },
        )


@pytest.fixture
async def payouts(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the Payouts side, whose faults and webhook URL end with the test."""
    async with httpx.AsyncClient(base_url=sandbox_url, headers=PAYOUT_AUTH, timeout=10) as client:
        yield client
        defaults = PayoutFaults().model_dump()
        assert (await client.patch("/_sandbox/payout-faults", json=defaults)).status_code == 200
        reset = {"webhook_url": None, "step_s": 0.1, "pending_s": 0.5, "reversal_s": 0.2}
        assert (await client.patch("/_sandbox/payout-settings", json=reset)).status_code == 200


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
