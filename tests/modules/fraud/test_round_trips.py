"""Scoring an order on the hot path: one statement for the lists and the history, one Redis
call for every velocity window, one insert for the assessment (and its events) — and the
Redis windows and their SQL fallback still count alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.modules.fraud import screening, velocity
from commdesk_billing.modules.fraud.rules import Action
from commdesk_billing.modules.payments import risk
from commdesk_billing.modules.wallet.model import Wallet


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_settings(settings)
    try:
        yield s
    finally:
        await s.aclose()


async def test_an_order_is_scored_in_two_statements_and_one_redis_call(
    engine: AsyncEngine,
    settings: Settings,
    store: RedisStore,
    make_wallet: Callable[..., Awaitable[Wallet]],
) -> None:
    wallet = await make_wallet()
    # New account, largest pack: one rule fires, so its event rides on the assessment.
    tuned = settings.model_copy(update={"fraud_new_account_weight": 20})
    ctx = screening.Context(ip="10.9.8.7", device_id=f"dev-{uuid.uuid4().hex}", store=store)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:

        async def scored(conn: Any) -> screening.Screening:
            statements.clear()
            s = await risk.screen(
                conn,
                ctx,
                tuned,
                "sub",
                f"key-{uuid.uuid4().hex}",
                wallet.id,
                wallet.owner_id,
                {"pack_code": "pack_1000", "amount_paise": 100_000},
            )
            assert await screening._record(conn, s, user_id=wallet.owner_id, payment_id=None)
            return s

        s = await in_transaction(engine, scored)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert len(statements) == 2, statements
    assert s.action is Action.allow and s.verdict.rules == ["new_account_largest_pack"]
    assert s.features.largest_pack and s.features.user_attempts == 1

    async def events(conn: Any) -> list[Any]:
        rows = await conn.exec_driver_sql(
            "SELECT kind, severity, details->>'assessment_id' FROM fraud_events"
            f" WHERE user_id = '{wallet.owner_id}'"
        )
        return [tuple(r) for r in rows]

    assert await in_transaction(engine, events) == [("new_account_largest_pack", "low", str(s.id))]


async def test_the_redis_windows_and_the_sql_fallback_count_alike(
    engine: AsyncEngine, store: RedisStore, make_wallet: Callable[..., Awaitable[Wallet]]
) -> None:
    device = f"dev-{uuid.uuid4().hex}"
    users = [str((await make_wallet()).owner_id) for _ in range(3)]
    got: list[tuple[velocity.Counts, velocity.Counts]] = []
    for i, user in enumerate([*users, users[0]]):
        key = f"attempt-{i}"
        touches = [velocity.Touch("user", user, key), velocity.Touch("device", device, key)]

        async def both(
            conn: Any, user: str = user, touches: list[velocity.Touch] = touches
        ) -> None:
            kw: dict[str, Any] = {"user_id": user, "window_s": 3600}
            redis = await velocity.count(conn, store, touches, **kw)
            sql = await velocity.count(conn, None, touches, **kw)
            got.append((redis, sql))
            # The attempt is scored: its assessment is what the SQL side counts next time.
            await conn.exec_driver_sql(
                "INSERT INTO fraud_assessments (id, stage, user_id, device_id, amount_paise,"
                f" score, action, rules) VALUES ('{uuid.uuid4()}', 'order', '{user}',"
                f" '{device}', 100, 0, 'allow', '{{}}')"
            )

        await in_transaction(engine, both)
    assert [r.source for r, _ in got] == ["redis"] * 4
    assert [(r.attempts, r.accounts) for r, _ in got] == [(s.attempts, s.accounts) for _, s in got]
    assert [r.attempts["device"] for r, _ in got] == [1, 2, 3, 4]
    assert [r.accounts["device"] for r, _ in got] == [1, 2, 3, 3]
    assert got[-1][0].attempts["user"] == 2
