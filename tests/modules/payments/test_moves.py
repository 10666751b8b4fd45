"""A payment's writes in as few statements as they can be: the row and its `payment.created`
fact in one, a move with its transition and billing fact in one (and the row as it left it,
for the callers that need it), the sync's lock and mark in one. What they write is what the
separate statements wrote."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.state import Status, move, move_returning
from commdesk_billing.modules.wallet.service import get_or_create_user_wallet


def _values(wallet_id: uuid.UUID, user_id: uuid.UUID, **extra: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex
    return {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "wallet_id": wallet_id,
        "order_id": f"cdb_{tag}",
        "idempotency_key": f"moves:{tag}",
        "request_hash": "x",
        "kind": "pack",
        "pack_code": "pack_300",
        "pack_version": 1,
        "amount_paise": 30000,
        "taxable_paise": 25424,
        "gst_amount_paise": 4576,
        "cgst_paise": 2288,
        "sgst_paise": 2288,
        "igst_paise": 0,
        "gst_mode": "inclusive",
        "gst_rate_bp": 1800,
        "buyer_state": "29",
        "seller_state": "29",
        "base_credits": 3000,
        "bonus_credits": 200,
        "status": Status.CREATED.value,
        "order_expires_at": datetime.now(UTC) + timedelta(hours=1),
        "metadata": {"requested_by": "test"},
        **extra,
    }


class Statements:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, conn: object, cursor: object, statement: str, *_: object) -> None:
        self.seen.append(statement)


@pytest.fixture
async def conn(engine: AsyncEngine) -> AsyncIterator[tuple[AsyncConnection, Statements]]:
    """A transaction rolled back at the end, its statements counted."""
    counted = Statements()
    async with engine.connect() as c:
        event.listen(c.sync_connection, "before_cursor_execute", counted)
        async with c.begin() as t:
            yield c, counted
            await t.rollback()


async def _new(c: AsyncConnection, **extra: Any) -> dict[str, Any]:
    wallet = await get_or_create_user_wallet(c, f"moves-{uuid.uuid4().hex}")
    return _values(wallet.id, wallet.owner_id, **extra)


async def _facts(c: AsyncConnection, payment_id: uuid.UUID) -> list[tuple[str, Any]]:
    rows = await c.execute(
        text("SELECT event_type, data FROM billing_events WHERE payment_id = :p ORDER BY id"),
        {"p": payment_id},
    )
    return [(r[0], r[1] if isinstance(r[1], dict) else json.loads(r[1])) for r in rows]


async def _transitions(c: AsyncConnection, payment_id: uuid.UUID) -> list[tuple[str, str, str]]:
    rows = await c.execute(
        text("""SELECT from_status, to_status, reason FROM payment_transitions
                 WHERE payment_id = :p ORDER BY id"""),
        {"p": payment_id},
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def test_the_row_and_its_created_fact_in_one_statement(
    conn: tuple[AsyncConnection, Statements],
) -> None:
    c, counted = conn
    values = await _new(c)
    counted.seen.clear()
    written = await repo.insert(c, values)
    assert len(counted.seen) == 1
    assert written is not None
    assert (written.id, written.status, written.order_id) == (
        values["id"],
        Status.CREATED,
        values["order_id"],
    )
    assert written.metadata == {"requested_by": "test"}
    assert await _facts(c, written.id) == [("payment.created", {"kind": "pack"})]
    # The same key again: nothing written, no second fact.
    again = await repo.insert(c, {**values, "id": uuid.uuid4(), "order_id": "cdb_other"})
    assert again is None
    assert await _facts(c, written.id) == [("payment.created", {"kind": "pack"})]


async def test_a_move_its_transition_and_fact_in_one_statement(
    conn: tuple[AsyncConnection, Statements],
) -> None:
    c, counted = conn
    p = await repo.insert(c, await _new(c))
    assert p is not None
    counted.seen.clear()
    moved = await move_returning(
        c,
        p.id,
        Status.ACTIVE,
        reason="order opened at cashfree",
        payment_session_id="session_1",
        cashfree_order_id="cf_1",
    )
    assert len(counted.seen) == 1  # ACTIVE is not announced: nothing else
    assert moved is not None
    previous, row = moved
    assert previous is Status.CREATED
    assert (row.status, row.payment_session_id, row.cashfree_order_id) == (
        Status.ACTIVE,
        "session_1",
        "cf_1",
    )
    assert row == await repo.get(c, p.id)
    assert await _transitions(c, p.id) == [("CREATED", "ACTIVE", "order opened at cashfree")]
    assert (await _facts(c, p.id))[1:] == [
        ("payment.active", {"from": "CREATED", "reason": "order opened at cashfree"})
    ]


async def test_a_move_that_does_not_apply_or_stays_writes_nothing(
    conn: tuple[AsyncConnection, Statements],
) -> None:
    c, _ = conn
    p = await repo.insert(c, await _new(c))
    assert p is not None
    assert await move(c, p.id, Status.CREDITED, reason="not from CREATED") is None
    assert await move_returning(c, p.id, Status.CREDITED, reason="nor this") is None
    assert await move(c, p.id, Status.ACTIVE, reason="opened") is Status.CREATED
    assert await move(c, p.id, Status.FAILED, reason="declined" * 100) is Status.ACTIVE
    # FAILED → FAILED is allowed (a second failed attempt) but is no transition.
    assert await move(c, p.id, Status.FAILED, reason="declined again") is Status.FAILED
    assert [(f, t) for f, t, _ in await _transitions(c, p.id)] == [
        ("CREATED", "ACTIVE"),
        ("ACTIVE", "FAILED"),
    ]
    reasons = [r for _, _, r in await _transitions(c, p.id)]
    assert len(reasons[1]) == 500  # as the transition's reason always was cut
    facts = await _facts(c, p.id)
    assert [t for t, _ in facts] == ["payment.created", "payment.active", "payment.failed"]
    assert facts[2][1] == {"from": "ACTIVE", "reason": ("declined" * 100)[:200]}
    outbox = await c.execute(
        text("""SELECT count(*) FROM outbox WHERE message_type = 'payment.status_changed'
                   AND body LIKE :p"""),
        {"p": f"%{p.id}%"},
    )
    assert outbox.scalar_one() >= 1  # FAILED is announced, once per queue routed for it


async def test_the_sync_locks_and_marks_an_order_but_not_a_mandate_charge(
    conn: tuple[AsyncConnection, Statements],
) -> None:
    c, counted = conn
    order = await repo.insert(c, await _new(c))
    charge = await repo.insert(
        c, await _new(c, channel="mandate", subscription_id=f"sub_{uuid.uuid4().hex[:8]}")
    )
    assert order is not None and charge is not None
    counted.seen.clear()
    locked = await repo.lock_for_sync(c, order.id)
    assert len(counted.seen) == 1
    assert locked is not None
    assert locked.sync_count == order.sync_count + 1
    assert locked.last_synced_at is not None
    assert await repo.lock_for_sync(c, charge.id) is None
    untouched = await repo.get(c, charge.id)
    assert untouched is not None
    assert (untouched.sync_count, untouched.last_synced_at) == (
        charge.sync_count,
        charge.last_synced_at,
    )
    assert await repo.lock_for_sync(c, uuid.uuid4()) is None
