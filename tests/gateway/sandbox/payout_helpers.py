"""Small steps the Payouts sandbox tests share: a beneficiary, a transfer, waiting for a state,
and the webhooks one transfer caused."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from tests.gateway.sandbox.conftest import unique
from tests.gateway.sandbox.payout_models import Beneficiary, Transfer
from tests.gateway.sandbox.servers import Received, Receiver
from tests.gateway.sandbox.strict_models import parse

# Cashfree's sandbox test accounts (cashfree.md §6.2), as (account, IFSC).
SUCCESS = ("026291800001191", "YESB0000262")
INVALID_ACCOUNT = ("026291800001190", "YESB0000262")
PENDING_THEN_SUCCESS = ("00224412311300", "YESB0000001")
PENDING_THEN_FAILURE = ("7766666351000", "YESB0000001")
SUCCESS_THEN_REVERSED = ("7766671735000", "SBIN0000004")
SLOW_ANSWER = ("34978321547298", "KKBK0000001")


def fresh_account() -> tuple[str, str]:
    """An account no script names: transfers to it succeed."""
    return str(uuid.uuid4().int)[:14], "UTIB0000123"


async def beneficiary_for(payouts: httpx.AsyncClient, account: tuple[str, str]) -> Beneficiary:
    """The beneficiary of a test account: Cashfree keeps one per account, so tests share it."""
    query = {"bank_account_number": account[0], "bank_ifsc": account[1]}
    response = await payouts.get("/payout/beneficiary", params=query)
    if response.status_code == 200:
        return parse(Beneficiary, response.content)
    assert response.status_code == 404, response.text
    return await add_beneficiary(payouts, account)


async def add_beneficiary(
    payouts: httpx.AsyncClient,
    account: tuple[str, str] | None = None,
    *,
    vpa: str | None = None,
    name: str = "Priya Sharma",
) -> Beneficiary:
    instrument: dict[str, Any] = {"vpa": vpa} if vpa else {}
    if account is not None:
        instrument |= {"bank_account_number": account[0], "bank_ifsc": account[1]}
    response = await payouts.post(
        "/payout/beneficiary",
        json={
            "beneficiary_id": unique("bene"),
            "beneficiary_name": name,
            "beneficiary_instrument_details": instrument,
            "beneficiary_contact_details": {
                "beneficiary_email": "payee@example.com",
                "beneficiary_phone": "9876543210",
                "beneficiary_country_code": "+91",
                "beneficiary_postal_code": "560025",
            },
        },
    )
    assert response.status_code == 201, response.text
    return parse(Beneficiary, response.content)


async def create_transfer(
    payouts: httpx.AsyncClient, beneficiary_id: str, *, amount: Any = 150, **extra: Any
) -> Transfer:
    body = {
        "transfer_id": unique("tr"),
        "transfer_amount": amount,
        "beneficiary_details": {"beneficiary_id": beneficiary_id},
        "transfer_remarks": "weekly settlement",
    } | extra
    response = await payouts.post("/payout/transfers", json=body)
    assert response.status_code == 200, response.text
    return parse(Transfer, response.content)


async def fetch_transfer(payouts: httpx.AsyncClient, **query: str) -> Transfer:
    response = await payouts.get("/payout/transfers", params=query)
    assert response.status_code == 200, response.text
    return parse(Transfer, response.content)


async def wait_transfer(
    payouts: httpx.AsyncClient, transfer_id: str, status_code: str, within_s: float = 5.0
) -> Transfer:
    """The transfer once its status_code is `status_code`."""
    deadline = time.monotonic() + within_s
    while True:
        transfer = await fetch_transfer(payouts, transfer_id=transfer_id)
        if transfer.status_code == status_code:
            return transfer
        assert time.monotonic() < deadline, f"transfer still {transfer.status_code}"
        await asyncio.sleep(0.03)


async def hook_to(payouts: httpx.AsyncClient, receiver: Receiver, **plan: Any) -> str:
    """Point the Payouts webhook at a fresh receiver hook; returns the hook's name."""
    name = unique("payout_hook")
    url = receiver.hook(name, **plan)
    response = await payouts.patch("/_sandbox/payout-settings", json={"webhook_url": url})
    assert response.status_code == 200, response.text
    return name


def of_transfer(hooks: list[Received], transfer_id: str) -> list[Received]:
    return [h for h in hooks if json.loads(h.body)["data"]["transfer_id"] == transfer_id]


async def wait_hooks(
    receiver: Receiver, name: str, transfer_id: str, count: int, within_s: float = 5.0
) -> list[Received]:
    deadline = time.monotonic() + within_s
    while len(got := of_transfer(receiver.got(name), transfer_id)) < count:
        assert time.monotonic() < deadline, f"{len(got)} webhooks for {transfer_id}"
        await asyncio.sleep(0.02)
    return got
