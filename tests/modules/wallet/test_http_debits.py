"""The debit route's batches (http_debits.py, batcher.py), through the HTTP app; how a test
makes a batch for certain is told in debit_batches.py."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.modules.wallet.schemas import operation_body, render
from commdesk_billing.security.jwt import Role
from tests.conftest import auth, new_wallet
from tests.modules.wallet.debit_batches import (
    balance,
    batched,
    debit,
    keyed_debits,
    model_answer,
    stored,
    wallet_and_line,
)

PROBLEM = "application/problem+json"


async def _transactions(engine: AsyncEngine, wallet_id: uuid.UUID) -> dict[int, int]:
    """Statement line seq -> the writing transaction (lines of one transaction share xmin)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT seq, xmin::text AS x FROM wallet_transactions WHERE wallet_id = :w"),
            {"w": wallet_id},
        )
        return {r.seq: int(r.x) for r in rows}


async def _behind_one(
    engine: AsyncEngine,
    app: Any,
    client: httpx.AsyncClient,
    svc: str,
    wallet_id: uuid.UUID,
    *debits: tuple[int, str] | tuple[int, str, str],
) -> list[httpx.Response]:
    """`debits` ((credits, key[, reason]) each) in one batch, behind a debit of 1 credit
    that runs alone: every answer, that one's first."""
    lead = debit(client, svc, wallet_id, 1, uuid.uuid4().hex)
    return await batched(
        engine, app, wallet_id, [lead, *(debit(client, svc, wallet_id, *d) for d in debits)]
    )


async def test_concurrent_debits_share_transactions_and_each_gets_its_own_line(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    wallet = await new_wallet(engine, 1000)
    amounts = list(range(1, 21))
    sends = [debit(client, svc, wallet.id, c, f"k-{c}-{uuid.uuid4().hex}") for c in amounts]
    answers = await batched(engine, app, wallet.id, sends)
    assert [r.status_code for r in answers] == [201] * len(amounts)
    lines = [r.json()["transaction"] for r in answers]
    assert [t["credits"] for t in lines] == amounts  # each answered with its own debit
    assert len({t["id"] for t in lines}) == len(amounts)
    # The lines follow one another exactly: each starts where the one before it ended.
    by_seq = sorted(lines, key=lambda t: t["seq"])
    assert [t["seq"] for t in by_seq] == list(range(2, 2 + len(amounts)))  # 1: the grant
    for before, after in itertools.pairwise(by_seq):
        assert after["balance_before"] == before["balance_after"]
    assert by_seq[0]["balance_before"] == 1000
    assert await balance(client, svc, wallet.id) == 1000 - sum(amounts)
    # Each answer's wallet is the wallet as its own debit left it.
    for r in answers:
        body = r.json()
        assert body["wallet"]["available_credits"] == body["transaction"]["balance_after"]
    # The first ran alone; the other 19 shared one transaction.
    txns = await _transactions(engine, wallet.id)
    debit_txns = {txns[t["seq"]] for t in lines}
    assert len(debit_txns) == 2
    # Every answer is what the statement says of that line.
    page = await client.get(f"/v1/wallets/{wallet.id}/transactions?limit=50", headers=auth(svc))
    listed = {t["id"]: t for t in page.json()["data"]}
    for t in lines:
        assert listed[t["id"]] == t


async def test_one_insufficient_debit_in_a_batch_fails_alone(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    wallet = await new_wallet(engine, 100)
    keys, sends = keyed_debits(client, svc, wallet.id, (10, 20, 500, 30), "batch")
    answers = await batched(engine, app, wallet.id, sends)
    assert [r.status_code for r in answers] == [201, 201, 409, 201]
    refused = answers[2]
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["code"] == "insufficient_credits"
    # What the wallet had when its turn came (the batch's order is the order they arrived).
    assert refused.json()["available_credits"] in (90, 70, 60, 40)
    assert await balance(client, svc, wallet.id) == 40
    # The refusal is the key's answer: the same request gets it again, even now it could pay.
    again = await debit(client, svc, wallet.id, 500, keys[2])()
    assert again.status_code == 409 and again.text == refused.text
    assert again.headers["idempotent-replayed"] == "true"


async def test_the_same_key_twice_in_one_batch_is_one_debit_answered_twice(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    wallet = await new_wallet(engine, 100)
    key = uuid.uuid4().hex
    answers = await _behind_one(engine, app, client, svc, wallet.id, (7, key), (7, key))
    assert [r.status_code for r in answers] == [201, 201, 201]
    assert answers[1].text == answers[2].text
    assert "idempotent-replayed" not in answers[1].headers
    assert answers[2].headers["idempotent-replayed"] == "true"
    assert await balance(client, svc, wallet.id) == 100 - 1 - 7
    # Later, the key answers the stored result.
    later = await debit(client, svc, wallet.id, 7, key)()
    assert later.status_code == 201 and later.text == answers[1].text
    assert later.headers["idempotent-replayed"] == "true"


async def test_a_key_reused_with_another_body_is_refused_in_a_batch_and_after(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    wallet = await new_wallet(engine, 100)
    key = uuid.uuid4().hex
    answers = await _behind_one(
        engine, app, client, svc, wallet.id, (5, key), (5, key, "another reason")
    )
    assert [r.status_code for r in answers] == [201, 201, 422]
    assert answers[2].json()["code"] == "idempotency_key_reused"
    # And once stored: another body under the key is refused, the same one replayed.
    other = await debit(client, svc, wallet.id, 6, key)()
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    same = await debit(client, svc, wallet.id, 5, key)()
    assert same.status_code == 201 and same.text == answers[1].text
    assert await balance(client, svc, wallet.id) == 94


async def test_a_stored_key_in_a_later_batch_is_replayed_not_debited(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    wallet = await new_wallet(engine, 100)
    key = uuid.uuid4().hex
    first = await debit(client, svc, wallet.id, 9, key)()
    assert first.status_code == 201
    answers = await _behind_one(
        engine, app, client, svc, wallet.id, (9, key), (2, uuid.uuid4().hex)
    )
    assert [r.status_code for r in answers] == [201, 201, 201]
    assert answers[1].text == first.text
    assert answers[1].headers["idempotent-replayed"] == "true"
    assert await balance(client, svc, wallet.id) == 100 - 9 - 1 - 2


async def test_a_database_error_fails_every_request_of_the_batch_and_stores_nothing(
    engine: AsyncEngine, app: Any, client: httpx.AsyncClient, svc: str
) -> None:
    wallet = await new_wallet(engine, 100)
    poison = f"poison-{uuid.uuid4().hex[:8]}"
    # A real error from PostgreSQL inside the batch's write statement: a trigger that
    # refuses one reason (named for this test alone).
    fn = f"refuse_{poison.replace('-', '_')}"
    async with engine.begin() as conn:
        await conn.execute(
            text(f"""
            CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.source = '{poison}' THEN RAISE EXCEPTION 'refused for the test'; END IF;
                RETURN NEW;
            END $$""")
        )
        await conn.execute(
            text(f"""CREATE TRIGGER {fn} BEFORE INSERT ON wallet_transactions
                     FOR EACH ROW EXECUTE FUNCTION {fn}()""")
        )
    keys = [uuid.uuid4().hex for _ in range(4)]
    try:
        sends = [
            debit(client, svc, wallet.id, 1, keys[0]),
            debit(client, svc, wallet.id, 2, keys[1]),
            debit(client, svc, wallet.id, 3, keys[2], reason=poison),
            debit(client, svc, wallet.id, 4, keys[3]),
        ]
        answers = await batched(engine, app, wallet.id, sends)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TRIGGER {fn} ON wallet_transactions"))
            await conn.execute(text(f"DROP FUNCTION {fn}()"))
    assert answers[0].status_code == 201  # alone, before the batch
    for r in answers[1:]:
        assert r.status_code == 500, r.text
        assert r.headers["content-type"] == PROBLEM
    assert await balance(client, svc, wallet.id) == 99
    assert await stored(engine, svc, *keys[1:]) == 0
    # Nothing was stored under their keys: the same requests go through now.
    retried = [await s() for s in sends[1:]]
    assert [r.status_code for r in retried] == [201, 201, 201]
    assert await balance(client, svc, wallet.id) == 100 - 1 - 2 - 3 - 4


async def test_a_member_spends_only_from_their_own_wallet_in_a_batch(
    engine: AsyncEngine,
    app: Any,
    client: httpx.AsyncClient,
    token: Callable[..., str],
) -> None:
    owner_sub = f"owner-{uuid.uuid4().hex}"
    wallet = await new_wallet(engine, 100, sub=owner_sub)
    owner = token(Role.member, sub=owner_sub)
    stranger = token(Role.member)
    sends = [
        debit(client, owner, wallet.id, 1, uuid.uuid4().hex),
        debit(client, stranger, wallet.id, 2, uuid.uuid4().hex),
        debit(client, owner, wallet.id, 3, uuid.uuid4().hex),
    ]
    answers = await batched(engine, app, wallet.id, sends)
    assert [r.status_code for r in answers] == [201, 403, 201]
    assert answers[1].json()["code"] == "forbidden"
    assert await balance(client, owner, wallet.id) == 96


async def test_a_debit_of_a_wallet_that_does_not_exist_is_404_and_stored(
    client: httpx.AsyncClient, svc: str
) -> None:
    missing = uuid.uuid4()
    key = uuid.uuid4().hex
    first = await debit(client, svc, missing, 1, key)()
    assert first.status_code == 404 and first.json()["code"] == "not_found"
    again = await debit(client, svc, missing, 1, key)()
    assert again.text == first.text and again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("micros", [0, 1, 120, 999_999])
def test_the_fast_answer_is_byte_for_byte_the_models_answer(micros: int) -> None:
    at = datetime(2026, 12, 7, 10, 0, 0, micros, tzinfo=UTC)
    wallet, line = wallet_and_line(
        at,
        pending_credits=3,
        updated_at=at,
        source='ai_summary ✓ "quoted" \n',
        metadata={"feature": "summary", "n": 3, "ok": True, "none": None, "ü": "ß"},
    )
    model = model_answer(wallet, line)
    fast = render(operation_body(wallet, line))
    assert orjson.loads(fast) == model
    # As the JSON responses render it (compact, UTF-8 as it is).
    assert fast == json.dumps(model, ensure_ascii=False, separators=(",", ":")).encode()
