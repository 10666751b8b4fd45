"""A batch's transaction may run more than once (`in_transaction` re-runs it after a
serialization failure): what it counts is counted once, after the commit, for debits that are
in the books (`telemetry.aftercommit`), never once per attempt."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.idempotency import keys
from commdesk_billing.modules.wallet import writer
from commdesk_billing.security.jwt import Role
from tests.conftest import auth, new_wallet
from tests.modules.wallet.debit_batches import balance


def _counted(operation: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "billing_wallet_operations_total", {"operation": operation, "outcome": "ok"}
        )
        or 0.0
    )


def _debits_counted() -> float:
    return _counted("debit")


async def test_a_debit_whose_transaction_ran_twice_is_counted_once(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    svc: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wallet = await new_wallet(engine, 100)
    flush = writer.OperationBatch.flush_on_driver
    failed: list[bool] = []

    async def first_attempt_collides(self: writer.OperationBatch, *args: Any) -> Any:
        if not failed:
            failed.append(True)
            raise asyncpg.exceptions.SerializationError("could not serialize access")
        return await flush(self, *args)

    monkeypatch.setattr(writer.OperationBatch, "flush_on_driver", first_attempt_collides)
    before = _debits_counted()
    r = await client.post(
        f"/v1/wallets/{wallet.id}/debits",
        json={"credits": 7, "reason": "retried"},
        headers=auth(svc, uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    assert failed, "the first attempt did not collide"
    assert await balance(client, svc, wallet.id) == 93  # debited once
    assert _debits_counted() - before == 1


async def test_a_grant_whose_transaction_ran_twice_is_counted_once(
    client: httpx.AsyncClient,
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other keyed wallet operations (grant, hold, capture, release) count the same way:
    here the first attempt fails after the grant was answered, as it stores the answer."""
    member = token(Role.member)
    wid = (await client.get("/v1/wallets/me", headers=auth(member))).json()["id"]
    store = keys._store
    failed: list[bool] = []

    async def first_attempt_collides(*args: Any) -> Any:
        await store(*args)
        if not failed:
            failed.append(True)
            raise asyncpg.exceptions.SerializationError("could not serialize access")

    monkeypatch.setattr(keys, "_store", first_attempt_collides)
    before = _counted("grant")
    r = await client.post(
        f"/v1/wallets/{wid}/grants",
        json={"credits": 11, "reason": "retried"},
        headers=auth(token(Role.finance_admin), uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    assert failed, "the first attempt did not collide"
    assert r.json()["wallet"]["available_credits"] == 11  # granted once
    assert _counted("grant") - before == 1
