"""The debit route's batches at their edges: answers the route gave before batching (and must
still give), and the books a batched debit writes compared with `consume_credits`'s."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.idempotency.keys import KeyedRequest
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.http_debits import batcher_of
from commdesk_billing.modules.wallet.model import LotSource
from commdesk_billing.modules.wallet.schemas import operation_body, render
from tests.conftest import grant_bought, new_wallet
from tests.modules.wallet.debit_batches import (
    LOCK_WALLET,
    balance,
    batched,
    debit,
    first_waiting_rest_queued,
    keyed_debits,
    lock_waiters,
    model_answer,
    send,
    stored,
    sub_of,
    wait,
    wait_async,
    wallet_and_line,
)


async def test_a_metadata_integer_past_64_bits_is_debited_and_spoils_no_batchmate(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    """The body allows any integer in metadata (the statement stores it as jsonb); the route
    answered such a debit 201 before batching. One such request must neither be refused
    with a 500 nor take the other requests of its batch down with it."""
    wallet = await new_wallet(engine, 100)
    huge = 2**70
    keys = [uuid.uuid4().hex for _ in range(3)]
    sends = [
        send(client, svc, wallet.id, keys[0], {"credits": 1, "reason": "alone"}),
        send(
            client,
            svc,
            wallet.id,
            keys[1],
            {"credits": 2, "reason": "big", "metadata": {"n": huge, "m": -huge}},
        ),
        send(client, svc, wallet.id, keys[2], {"credits": 3, "reason": "neighbour"}),
    ]
    answers = await batched(engine, app, wallet.id, sends)
    assert [r.status_code for r in answers] == [201, 201, 201], [r.text for r in answers]
    meta = answers[1].json()["transaction"]["metadata"]
    assert meta["n"] == huge and meta["m"] == -huge
    assert await balance(client, svc, wallet.id) == 100 - 1 - 2 - 3
    # Its replay is the stored answer, byte for byte.
    again = await sends[1]()
    assert again.status_code == 201 and again.content == answers[1].content
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_key_reused_after_its_answer_was_pruned_is_refused_but_not_stored(
    engine: AsyncEngine, client: httpx.AsyncClient, svc: str
) -> None:
    """Once a stored answer is pruned (retention), the statement line's operation key still
    refuses another debit under the key (422), and, as before batching, that refusal is not
    the key's answer: the original request sent again is answered with its debit, not 422."""
    wallet = await new_wallet(engine, 100)
    key = uuid.uuid4().hex
    original = {"credits": 5, "reason": "original"}
    first = await send(client, svc, wallet.id, key, original)()
    assert first.status_code == 201
    async with engine.begin() as conn:  # what prune_expired does to it after the retention
        await conn.execute(
            text("DELETE FROM idempotency_keys WHERE scope = :s AND key = :k"),
            {"s": sub_of(svc), "k": key},
        )
    other = await debit(client, svc, wallet.id, 6, key, "other")()
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    assert await stored(engine, svc, key) == 0
    retried = await send(client, svc, wallet.id, key, original)()
    assert retried.status_code == 201, retried.text
    assert retried.json()["transaction"]["id"] == first.json()["transaction"]["id"]
    assert await balance(client, svc, wallet.id) == 95


async def _books(conn: AsyncConnection, wallet_id: uuid.UUID) -> dict[str, Any]:
    """What the wallet's debits wrote, without ids, keys and times: statement lines, each
    with its journal's legs (house accounts by code, the wallet's by kind) and its lot
    movements (lots by FIFO position); and the lots as left."""
    lot_rows = (
        await conn.execute(
            text("""
            SELECT * FROM credit_lots WHERE wallet_id = :w
             ORDER BY expires_at ASC NULLS LAST, granted_at, id"""),
            {"w": wallet_id},
        )
    ).all()
    position = {r.id: n for n, r in enumerate(lot_rows)}
    skip = {"id", "wallet_id", "journal_id", "granted_at", "expires_at", "updated_at"}
    lots = [
        {k: v for k, v in r._mapping.items() if k not in skip and not k.endswith("_at")}
        for r in lot_rows
    ]
    lines = []
    for t in (
        await conn.execute(
            text("""
            SELECT * FROM wallet_transactions WHERE wallet_id = :w
               AND transaction_type = 'debit' ORDER BY seq"""),
            {"w": wallet_id},
        )
    ).all():
        legs = (
            await conn.execute(
                text("""
                SELECT CASE WHEN a.wallet_id IS NULL THEN a.code ELSE a.kind END AS account,
                       e.ledger, e.amount, e.wallet_id IS NOT NULL AS chained
                  FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
                 WHERE e.journal_id = :j ORDER BY e.ledger, e.amount, account"""),
                {"j": t.journal_id},
            )
        ).all()
        journal = (
            await conn.execute(
                text("SELECT kind, description, metadata FROM ledger_journals WHERE id = :j"),
                {"j": t.journal_id},
            )
        ).one()
        moves = (
            await conn.execute(
                text("""
                SELECT lot_id, credits FROM credit_lot_movements
                 WHERE wallet_transaction_id = :t ORDER BY id"""),
                {"t": t.id},
            )
        ).all()
        lines.append(
            {
                "seq": t.seq,
                "credits": t.credits,
                "before": t.balance_before,
                "after": t.balance_after,
                "source": t.source,
                "source_id": t.source_id,
                "metadata": t.metadata,
                "lot": position.get(t.lot_id) if t.lot_id else None,
                "journal": tuple(journal),
                "legs": [tuple(x) for x in legs],
                "moves": [(position[m.lot_id], m.credits) for m in moves],
            }
        )
    return {"lots": lots, "lines": lines}


async def _fund_like(engine: AsyncEngine) -> Any:
    """A wallet of three lots: promotional credits expiring soon (drawn first), then two
    purchases with a cost basis (drawn oldest first)."""
    sub = f"user-{uuid.uuid4().hex}"
    wallet = await in_transaction(engine, lambda c: ws.get_or_create_user_wallet(c, sub))
    soon = datetime.now(UTC) + timedelta(days=3)
    grants: list[dict[str, Any]] = [
        {"credits": 30, "source": LotSource.promotional, "expires_at": soon},
        {"credits": 100, "source": LotSource.purchase, "paid_paise": 1000, "taxable_paise": 847},
        {"credits": 50, "source": LotSource.purchase, "paid_paise": 700, "taxable_paise": 593},
    ]
    for g in grants:
        await in_transaction(
            engine,
            lambda c, g=g: grant_bought(
                c,
                wallet_id=wallet.id,
                idempotency_key=f"seed:{uuid.uuid4()}",
                reason="test funding",
                **g,
            ),
        )
    return wallet


async def test_batched_http_debits_book_exactly_what_consume_credits_books(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    """The same debits (one alone, the rest in one batch, one refused for want of credits)
    through the route and through `consume_credits` one at a time, on two wallets funded
    alike: the same lines, journals, legs, recognized basis, lot movements and lots."""
    by_http, by_service = await _fund_like(engine), await _fund_like(engine)
    debits: list[dict[str, Any]] = [
        {"credits": 7, "reason": "alone"},
        {"credits": 20, "reason": "crosses the promo lot", "source_id": "s-1"},
        {"credits": 500, "reason": "too much"},
        {"credits": 61, "reason": "into the second purchase", "metadata": {"f": "x", "n": 3}},
        {"credits": 33, "reason": "deeper", "metadata": {"ok": True}},
    ]
    sends = [send(client, svc, by_http.id, uuid.uuid4().hex, d) for d in debits]
    answers = await batched(engine, app, by_http.id, sends)
    assert [r.status_code for r in answers] == [201, 201, 409, 201, 201]
    # The batch took its requests in the order they reached it: the same order here.
    applied = sorted(
        (r.json()["transaction"]["seq"], n) for n, r in enumerate(answers) if r.status_code == 201
    )
    for d in [debits[n] for _, n in applied] + [debits[2]]:

        async def one(conn: AsyncConnection, d: dict[str, Any] = d) -> Any:
            return await ws.consume_credits(
                conn,
                wallet_id=by_service.id,
                credits=d["credits"],
                idempotency_key=f"http:{uuid.uuid4().hex}",
                reason=d["reason"],
                source_id=d.get("source_id"),
                metadata={**d.get("metadata", {}), "actor": sub_of(svc)},
            )

        try:
            await in_transaction(engine, one)
        except Exception as exc:  # the refused one, as the route refuses it
            assert d["credits"] == 500, exc
    async with engine.connect() as conn:
        http_books = await _books(conn, by_http.id)
        service_books = await _books(conn, by_service.id)
    assert len(http_books["lines"]) == 4
    assert any(len(line["legs"]) == 4 for line in http_books["lines"])  # basis recognized
    assert http_books == service_books


def test_the_fast_answer_with_an_integer_past_64_bits_is_the_models_answer() -> None:
    at = datetime(2026, 12, 7, 10, 0, 0, 120, tzinfo=UTC)
    wallet, line = wallet_and_line(
        at,
        pending_credits=0,
        updated_at=at.replace(microsecond=0),
        source="ü ✓",
        metadata={"n": 2**70, "m": -(2**64), "s": "ß"},
    )
    model = model_answer(wallet, line)
    fast = render(operation_body(wallet, line))
    assert fast == json.dumps(model, ensure_ascii=False, separators=(",", ":")).encode()
    assert render(json.loads(fast)) == fast  # a stored answer replays as it was


async def test_a_request_cancelled_in_its_transaction_debits_nothing_and_spoils_nothing(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    """The client of a debit running alone goes away while its statement waits for the
    wallet: nothing of it commits, nothing is stored under its key (its retry debits once),
    the requests queued behind it are answered, and the connection it used serves again."""
    wallet = await new_wallet(engine, 100)
    keys, sends = keyed_debits(client, svc, wallet.id, (5, 7, 9), "cancel")
    async with engine.connect() as blocker:
        tx = await blocker.begin()
        gone, rest = await first_waiting_rest_queued(engine, app, blocker, wallet.id, sends)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        await tx.commit()
    answers = await asyncio.gather(*rest)
    assert [r.status_code for r in answers] == [201, 201], [r.text for r in answers]
    assert await balance(client, svc, wallet.id) == 100 - 7 - 9
    assert await stored(engine, svc, keys[0]) == 0
    retried = await sends[0]()
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert await balance(client, svc, wallet.id) == 100 - 7 - 9 - 5
    # Every pooled connection still serves (none was left mid-statement or mid-transaction).
    more = [debit(client, svc, wallet.id, 1, uuid.uuid4().hex, "after") for _ in range(6)]
    again = await asyncio.gather(*(s() for s in more))
    assert [r.status_code for r in again] == [201] * 6
    assert await balance(client, svc, wallet.id) == 100 - 7 - 9 - 5 - 6


async def test_a_request_cancelled_once_its_batch_started_is_debited_with_its_answer_stored(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    """A queued request whose client goes away after its batch has started is in that batch:
    its debit commits with its answer stored, so its retry is answered with that debit."""
    wallet = await new_wallet(engine, 100)
    batcher = batcher_of(app.state)
    keys, sends = keyed_debits(client, svc, wallet.id, (5, 7, 9), "cancel")
    async with engine.connect() as first_blocker, engine.connect() as second_blocker:
        tx1 = await first_blocker.begin()
        alone, rest = await first_waiting_rest_queued(engine, app, first_blocker, wallet.id, sends)
        # A second holder in line behind the first request: the batch after it will wait.
        tx2 = await second_blocker.begin()
        taking = asyncio.ensure_future(second_blocker.execute(LOCK_WALLET, {"w": wallet.id}))
        for _ in range(1000):
            if await lock_waiters(engine) >= 2:
                break
            await asyncio.sleep(0.01)
        await tx1.commit()
        assert (await alone).status_code == 201
        await taking
        await wait(lambda: batcher.queued(wallet.id) == 0, "the batch starts")
        await wait_async(lambda: lock_waiters(engine), "the batch waits for the wallet")
        rest[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await rest[0]
        await tx2.commit()
    kept = await rest[1]
    assert kept.status_code == 201
    assert await balance(client, svc, wallet.id) == 100 - 5 - 7 - 9
    assert await stored(engine, svc, keys[1]) == 1
    retried = await sends[1]()
    assert retried.status_code == 201 and retried.headers["idempotent-replayed"] == "true"
    assert await balance(client, svc, wallet.id) == 100 - 5 - 7 - 9


async def test_a_key_held_by_another_transaction_is_409_in_a_batch_and_stores_nothing(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    """Another process's transaction holds one request's key: that request alone is told
    409 `idempotency_key_in_use` (nothing stored, nothing debited); its batchmates go on;
    once the key is free the same request goes through once."""
    wallet = await new_wallet(engine, 100)
    keys, sends = keyed_debits(client, svc, wallet.id, (1, 2, 3), "held")
    held = KeyedRequest(sub_of(svc), keys[1], "POST", "/", {}).lock_key
    async with engine.connect() as holder:
        tx = await holder.begin()
        await holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": held})
        answers = await batched(engine, app, wallet.id, sends)
        assert [r.status_code for r in answers] == [201, 409, 201]
        assert answers[1].json()["code"] == "idempotency_key_in_use"
        assert await stored(engine, svc, keys[1]) == 0
        await tx.rollback()
    assert await balance(client, svc, wallet.id) == 100 - 1 - 3
    retried = await sends[1]()
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert (await sends[1]()).content == retried.content
    assert await balance(client, svc, wallet.id) == 100 - 1 - 2 - 3


@pytest.mark.slow
async def test_two_processes_debiting_one_wallet_with_the_same_keys_debit_each_key_once(
    settings: Settings, engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    """Two API processes (two apps, each its own batcher and pool) get every request twice,
    the same key and body, at once, some a third time in the same process: each key is one
    debit, every 201 for a key is that debit, every other answer is 409 in use."""
    other = create_app(settings)
    other_engine = make_engine(settings, pool_size=5)
    other.state.settings = settings
    other.state.engine = other_engine
    other.state.redis = app.state.redis
    transport = httpx.ASGITransport(app=other, raise_app_exceptions=False)
    wallet = await new_wallet(engine, 1000)
    amounts = {f"{uuid.uuid4().hex}-{i}": 3 + i % 5 for i in range(30)}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c2:
            sends = [
                debit(c, svc, wallet.id, n, k, "two")
                for k, n in amounts.items()
                for c in (client, c2)
            ]
            sends += [
                debit(client, svc, wallet.id, n, k, "two") for k, n in list(amounts.items())[::3]
            ]
            random.Random(7).shuffle(sends)
            answers = await asyncio.gather(*(s() for s in sends))
    finally:
        await other_engine.dispose()
    by_key: dict[str, list[httpx.Response]] = {}
    for r in answers:
        by_key.setdefault(r.request.headers["idempotency-key"], []).append(r)
    for key, got in by_key.items():
        ok = [r for r in got if r.status_code == 201]
        assert ok, [r.text for r in got]
        assert len({r.json()["transaction"]["id"] for r in ok}) == 1
        assert all(r.json()["transaction"]["credits"] == amounts[key] for r in ok)
        for r in got:
            if r.status_code != 201:
                assert r.status_code == 409 and r.json()["code"] == "idempotency_key_in_use"
    assert await balance(client, svc, wallet.id) == 1000 - sum(amounts.values())
    async with engine.connect() as conn:
        lines = await conn.execute(
            text("""SELECT count(*) FROM wallet_transactions
                     WHERE wallet_id = :w AND transaction_type = 'debit'"""),
            {"w": wallet.id},
        )
        assert lines.scalar_one() == len(amounts)
    report = await in_transaction(engine, lambda c: ws.sync_balance(c, wallet.id))
    assert report.consistent, report.drift
