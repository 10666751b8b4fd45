"""Fixtures of the Easy Split tests: the shared stack seen through an API that can read
payout accounts (the Payouts pair of the stack's sandbox and a fresh sealing key ring), a
community whose payee has a verified bank account, and Easy Split's sandbox knobs (KYC at
once, vendor settlement webhooks to our receiver) put back when the test ends."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from commdesk_billing.gateway.factory import payouts_client
from commdesk_billing.gateway.sandbox.config import SandboxConfig
from commdesk_billing.security.sealed import key_ring
from tests.harness.stack import Stack
from tests.modules.payees.helpers import key_settings, payable_payee
from tests.modules.sponsorships.conftest import Put, bearer, collection, finance_token, put

__all__ = ["collection", "put"]  # the sponsorship tests' fixtures, used here too

KYC = {
    "name": "Chess Club Trust",
    "email": "treasurer@chess.example",
    "phone": "9876543210",
    "account_type": "BUSINESS",
    "business_type": "Education",
    "pan": "ABCPV1234D",
}
WEBHOOK_PATH = "/v1/webhooks/cashfree/vendor-settlements"


@dataclass
class Split:
    """The shared stack with an API that reads payout accounts (`stack.api`), and how to
    make a community that can become a vendor."""

    stack: Stack
    base: Stack  # the shared stack (its own API, the worker's settings)

    async def community(self, write: Put) -> str:
        """A community in MongoDB whose payee has a verified bank account."""
        cid = await write()
        ring = key_ring(self.stack.settings)
        async with payouts_client(self.stack.settings) as payouts:
            await payable_payee(self.stack.engine, payouts, ring, subject_id=cid)
        return cid

    async def register(self, cid: str, **kyc: Any) -> Any:
        return await self.stack.api.post(
            f"/v1/communities/{cid}/split-vendor",
            json={**KYC, **kyc},
            headers=bearer(finance_token(self.stack)),
        )

    async def vendor(self, write: Put) -> tuple[str, str]:
        """A community registered as a vendor, ACTIVE at Cashfree: (community, vendor id)."""
        cid = await self.community(write)
        r = await self.register(cid)
        assert r.status_code == 201, r.text
        got = await self.stack.api.get(
            f"/v1/communities/{cid}/split-vendor", headers=bearer(finance_token(self.stack))
        )
        assert got.status_code == 200 and got.json()["status"] == "ACTIVE", got.text
        return cid, str(r.json()["vendor_id"])

    async def easy_split(self, **knobs: Any) -> None:
        r = await self.stack.sandbox.patch("/_sandbox/easy-split", json=knobs)
        assert r.status_code == 200, r.text

    async def balance(self, vendor_id: str) -> int:
        r = await self.stack.sandbox.get(f"/pg/easy-split/vendors/{vendor_id}/balances")
        assert r.status_code == 200, r.text
        return round(float(r.json()["vendor_unsettled"]) * 100)

    async def due(self, vendor_id: str) -> int:
        """What `inr:vendor_settlements_due` holds for the vendor."""
        return int(
            await self.stack.scalar(
                "SELECT coalesce(-sum(e.amount), 0) FROM ledger_entries e "
                "JOIN ledger_journals j ON j.id = e.journal_id JOIN ledger_accounts a "
                "ON a.id = e.account_id WHERE a.code = 'inr:vendor_settlements_due' "
                "AND j.metadata->>'vendor_id' = :v",
                v=vendor_id,
            )
        )

    async def wait_for(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if await check():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def split(stack: Stack, variant: Callable[..., Awaitable[Stack]]) -> AsyncIterator[Split]:
    sandbox = SandboxConfig()
    api = await variant(
        cashfree_payout_base_url=f"{stack.sandbox_url}/payout",
        cashfree_verification_base_url=f"{stack.sandbox_url}/verification",
        cashfree_payout_client_id=sandbox.payout_client_id,
        cashfree_payout_client_secret=SecretStr(sandbox.payout_client_secret),
        cashfree_payout_timeout_s=5.0,
        cashfree_payout_max_retries=1,
        **key_settings(),
    )
    s = Split(api, stack)
    await s.easy_split(
        kyc_s=0,
        vendor_step_s=0.2,
        webhook_url=f"{stack.api_url}{WEBHOOK_PATH}",
        fail_vendor_settlements=0,
        reverse_vendor_settlements=0,
    )
    try:
        yield s
    finally:
        await s.easy_split(
            kyc_s=60,
            vendor_step_s=2,
            webhook_url=None,
            fail_vendor_settlements=0,
            reverse_vendor_settlements=0,
        )


def new_key() -> str:
    return uuid.uuid4().hex
