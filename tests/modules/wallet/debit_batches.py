"""What the debit route's batch tests (test_http_debits*.py) share: sending debits, holding a
wallet so that they batch, and reading what they left.

To make a batch for certain, a test holds the wallet's row lock from a connection of its
own, sends its requests, waits until the first is in its transaction (blocked on the lock)
and the rest are queued behind it in the batcher, and only then lets go: the first runs
alone, the others together in one transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.modules.wallet.http_debits import batcher_of
from commdesk_billing.modules.wallet.model import StatementLine, TxnType, Wallet
from commdesk_billing.modules.wallet.schemas import OperationOut, TransactionOut, WalletOut
from tests.conftest import auth

Send = Callable[[], Awaitable[httpx.Response]]

LOCK_WALLET = text("SELECT 1 FROM wallets WHERE id = :w FOR UPDATE")


def sub_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def send(
    client: httpx.AsyncClient, svc: str, wallet_id: uuid.UUID, key: str, body: dict[str, Any]
) -> Send:
    """A debit request with `body` under `key`, sent when called (and again on each call)."""

    async def post() -> httpx.Response:
        return await client.post(
            f"/v1/wallets/{wallet_id}/debits", json=body, headers=auth(svc, key)
        )

    return post


def debit(
    client: httpx.AsyncClient,
    svc: str,
    wallet_id: uuid.UUID,
    credits: int,
    key: str,
    reason: str = "batch",
) -> Send:
    return send(client, svc, wallet_id, key, {"credits": credits, "reason": reason})


def keyed_debits(
    client: httpx.AsyncClient,
    svc: str,
    wallet_id: uuid.UUID,
    credits: tuple[int, ...],
    reason: str,
) -> tuple[list[str], list[Send]]:
    """One debit of each of `credits`, each under a fresh key: (the keys, the sends)."""
    keys = [uuid.uuid4().hex for _ in credits]
    return keys, [
        debit(client, svc, wallet_id, c, k, reason) for k, c in zip(keys, credits, strict=True)
    ]


async def batched(
    engine: AsyncEngine, app: Any, wallet_id: uuid.UUID, sends: list[Send]
) -> list[httpx.Response]:
    """Run `sends` so that the first goes alone and the others in one batch after it, in
    the order given."""
    async with engine.connect() as blocker:
        tx = await blocker.begin()
        await blocker.execute(LOCK_WALLET, {"w": wallet_id})
        first = asyncio.ensure_future(sends[0]())
        batcher = batcher_of(app.state)
        for _ in range(200):
            if batcher.busy(wallet_id):
                break
            await asyncio.sleep(0.01)
        # One at a time, each queued before the next is sent: a request's way to the batcher
        # has awaits (the rate limits), so requests sent together arrive in no set order.
        rest: list[asyncio.Future[Any]] = []
        for s in sends[1:]:
            rest.append(asyncio.ensure_future(s()))
            for _ in range(500):
                if batcher.queued(wallet_id) == len(rest):
                    break
                await asyncio.sleep(0.01)
            assert batcher.queued(wallet_id) == len(rest)
        await tx.commit()
    return list(await asyncio.gather(first, *rest))


async def balance(client: httpx.AsyncClient, svc: str, wallet_id: uuid.UUID) -> int:
    r = await client.get(f"/v1/wallets/{wallet_id}", headers=auth(svc))
    return int(r.json()["available_credits"])


async def stored(engine: AsyncEngine, svc: str, *keys: str) -> int:
    """How many of `keys` have an answer stored under them for `svc`'s subject."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM idempotency_keys WHERE scope = :s AND key = ANY(:k)"),
            {"s": sub_of(svc), "k": list(keys)},
        )
        return int(found.scalar_one())


async def wait(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def wait_async(count: Callable[[], Awaitable[int]], what: str) -> None:
    for _ in range(1000):
        if await count() > 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def lock_waiters(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("""SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'""")
        )
        return int(found.scalar_one())


async def first_waiting_rest_queued(
    engine: AsyncEngine, app: Any, blocker: AsyncConnection, wallet_id: uuid.UUID, sends: list[Send]
) -> tuple[asyncio.Future[httpx.Response], list[asyncio.Future[httpx.Response]]]:
    """With `blocker` (in its transaction) taking the wallet's row lock: the first of `sends`
    in its transaction waiting for the wallet, the others queued behind it in the batcher."""
    batcher = batcher_of(app.state)
    await blocker.execute(LOCK_WALLET, {"w": wallet_id})
    first = asyncio.ensure_future(sends[0]())
    await wait(lambda: batcher.busy(wallet_id), "the first request runs")
    rest = [asyncio.ensure_future(s()) for s in sends[1:]]
    await wait(lambda: batcher.queued(wallet_id) == len(rest), "the others queue")
    await wait_async(lambda: lock_waiters(engine), "the first waits for the wallet")
    return first, rest


def wallet_and_line(
    at: datetime,
    *,
    pending_credits: int,
    updated_at: datetime,
    source: str,
    metadata: dict[str, Any],
) -> tuple[Wallet, StatementLine]:
    """A wallet left at 90 credits by a debit of 10 at `at`, and that debit's line."""
    wallet = Wallet(
        id=uuid.uuid4(),
        owner_type="user",
        owner_id=uuid.uuid4(),
        available_credits=90,
        locked_credits=0,
        pending_credits=pending_credits,
        lifetime_purchased_credits=100,
        auto_recharge_enabled=False,
        auto_recharge_threshold=0,
        available_account_id=uuid.uuid4(),
        held_account_id=uuid.uuid4(),
        chain_seq=2,
        chain_head=b"x",
        statement_seq=2,
        created_at=at - timedelta(days=3),
        updated_at=updated_at,
        auto_recharge_trigger=None,
    )
    line = StatementLine(
        id=uuid.uuid4(),
        wallet_id=wallet.id,
        seq=2,
        transaction_type=TxnType.debit,
        credits=10,
        balance_before=100,
        balance_after=90,
        source=source,
        source_id=None,
        metadata=metadata,
        idempotency_key="http:x",
        journal_id=uuid.uuid4(),
        hold_id=None,
        lot_id=None,
        created_at=at,
    )
    return wallet, line


def model_answer(wallet: Wallet, line: StatementLine) -> dict[str, Any]:
    """The debit's answer as the response models shape it."""
    out = OperationOut(wallet=WalletOut.of(wallet), transaction=TransactionOut.of(line), hold=None)
    return out.model_dump(mode="json")
