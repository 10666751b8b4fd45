"""Fixtures of the sponsorship tests: communities written to the run's MongoDB as CommDesk
writes them, and the callers of the sponsorship routes."""

from __future__ import annotations

import asyncio
import io
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pypdf import PdfReader

from commdesk_billing.security.jwt import Role, issue_token
from tests.harness.mongo import Document, MongoTarget, communities
from tests.harness.stack import Stack

Put = Callable[..., Awaitable[str]]


@pytest.fixture
async def collection(mongodb: MongoTarget) -> AsyncIterator[AsyncCollection[Document]]:
    async with communities(mongodb) as coll:
        yield coll


@pytest.fixture
def put(collection: AsyncCollection[Document]) -> Put:
    """Write a community (a fresh id, owned by `owner-<id>`); returns its id."""

    async def write(**fields: Any) -> str:
        cid = f"c-{uuid.uuid4().hex[:12]}"
        doc = {
            "_id": cid,
            "name": "Chess Club",
            "owner_ids": [f"owner-{cid}"],
            "status": "active",
            **fields,
        }
        await collection.replace_one({"_id": cid}, doc, upsert=True)
        return cid

    return write


def bearer(tok: str, key: bool = True) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {tok}"}
    if key:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return headers


def sponsor_token(stack: Stack, sub: str | None = None) -> str:
    return issue_token(
        stack.settings, sub=sub or f"sponsor-{uuid.uuid4().hex[:12]}", role=Role.sponsor
    )


def owner_token(stack: Stack, community_id: str) -> str:
    """A community_owner token whose `communities` claim names the community."""
    return issue_token(
        stack.settings,
        sub=f"co-{uuid.uuid4().hex[:8]}",
        role=Role.community_owner,
        communities=[community_id],
    )


def finance_token(stack: Stack) -> str:
    return stack.token("finance-1", Role.finance_admin)


def body(community_id: str, amount: Any = 100_000, **extra: Any) -> dict[str, Any]:
    return {
        "community_id": community_id,
        "amount_paise": amount,
        "purpose": "Inter-school chess tournament",
        "customer_phone": "9876543210",
        **extra,
    }


async def open_sponsorship(
    stack: Stack, tok: str, community_id: str, **extra: Any
) -> dict[str, Any]:
    r = await stack.api.post(
        "/v1/sponsorships", json=body(community_id, **extra), headers=bearer(tok)
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def get_sponsorship(stack: Stack, tok: str, sponsorship_id: str) -> dict[str, Any]:
    r = await stack.api.get(f"/v1/sponsorships/{sponsorship_id}", headers=bearer(tok, False))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def funded(stack: Stack, tok: str, community_id: str, **extra: Any) -> dict[str, Any]:
    """A sponsorship paid on the sandbox's checkout and funded by the worker."""
    s = await open_sponsorship(stack, tok, community_id, **extra)
    await stack.pay(s["payment"])
    await stack.wait_status(tok, s["payment"]["id"], {"CREDITED"})
    return await get_sponsorship(stack, tok, s["id"])


async def deliver(stack: Stack, tok: str, sid: str, seq: int) -> Any:
    return await stack.api.post(
        f"/v1/sponsorships/{sid}/milestones/{seq}/deliver", headers=bearer(tok, False)
    )


async def release(stack: Stack, tok: str, sid: str, seq: int, key: str | None = None) -> Any:
    headers = bearer(tok)
    if key:
        headers["Idempotency-Key"] = key
    return await stack.api.post(f"/v1/sponsorships/{sid}/milestones/{seq}/release", headers=headers)


async def payable(stack: Stack, community_id: str) -> int:
    return int(
        await stack.scalar(
            "SELECT coalesce(-sum(e.amount), 0) FROM ledger_entries e JOIN ledger_accounts a "
            "ON a.id = e.account_id WHERE a.code = :c",
            c=f"community:{community_id}:payable",
        )
    )


async def wait_invoice(
    stack: Stack, tok: str, payment_id: str, *, pdf: bool = False
) -> dict[str, Any]:
    """The sponsor's tax invoice of the payment, once the worker has issued it (and, with
    `pdf`, stored its PDF)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = await stack.api.get("/v1/invoices", headers=bearer(tok, False))
        assert r.status_code == 200, r.text
        for doc in r.json()["data"]:
            mine = doc["payment_id"] == payment_id and doc["kind"] == "tax_invoice"
            if mine and (doc["pdf_available"] or not pdf):
                return dict(doc)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no tax invoice for payment {payment_id}")


def pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))
