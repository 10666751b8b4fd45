"""Property-based: random sequences of wallet operations against real PostgreSQL keep the
wallet equal to a simple model and every invariant intact."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import HoldNotActive, InsufficientCredits
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource
from tests.conftest import new_wallet

amount = st.integers(min_value=1, max_value=400)
op = st.one_of(
    st.tuples(st.just("grant"), amount, st.sampled_from(list(LotSource))),
    st.tuples(st.just("consume"), amount),
    st.tuples(st.just("lock"), amount),
    st.tuples(st.just("capture"), st.integers(min_value=0, max_value=9), amount),
    st.tuples(st.just("release"), st.integers(min_value=0, max_value=9)),
    st.tuples(st.just("refund"), st.integers(min_value=0, max_value=9), amount),
    st.tuples(st.just("replay")),
)


@dataclass
class Model:
    available: int = 0
    locked: int = 0
    holds: list[tuple[uuid.UUID, int]] = field(default_factory=list)  # active holds
    lots: list[uuid.UUID] = field(default_factory=list)  # refundable (paid) lots


def _collect() -> list[list[tuple[object, ...]]]:
    found: list[list[tuple[object, ...]]] = []

    @settings(
        max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.lists(op, min_size=1, max_size=25))
    def gather(ops: list[tuple[object, ...]]) -> None:
        found.append(ops)

    gather()
    return found


async def _apply(
    engine: AsyncEngine,
    wallet_id: uuid.UUID,
    m: Model,
    step: tuple[object, ...],
    last: list[tuple[str, dict[str, object]]],
) -> None:
    kind = step[0]
    key = f"prop:{uuid.uuid4()}"
    if kind == "grant":
        n, source = int(step[1]), LotSource(step[2])  # type: ignore[call-overload]
        paid = n * 10 if source in (LotSource.purchase, LotSource.refund_reversal) else 0
        args = dict(
            wallet_id=wallet_id,
            credits=n,
            source=source,
            idempotency_key=key,
            reason="g",
            paid_paise=paid,
            taxable_paise=paid * 100 // 118,
        )
        r = await in_transaction(engine, lambda c: ws.grant_credits(c, **args))  # type: ignore[arg-type]
        m.available += n
        if source is not LotSource.promotional:
            m.lots.append(r.line.lot_id)  # type: ignore[arg-type]
        last.append(("grant", args))
    elif kind == "consume":
        n = int(step[1])  # type: ignore[call-overload]
        args = dict(wallet_id=wallet_id, credits=n, idempotency_key=key, reason="c")
        try:
            await in_transaction(engine, lambda c: ws.consume_credits(c, **args))  # type: ignore[arg-type]
        except InsufficientCredits:
            assert n > m.available
            return
        m.available -= n
        last.append(("consume", args))
    elif kind == "lock":
        n = int(step[1])  # type: ignore[call-overload]
        try:
            r = await in_transaction(
                engine,
                lambda c: ws.lock_credits(
                    c, wallet_id=wallet_id, credits=n, idempotency_key=key, reason="l", ttl_s=600
                ),
            )
        except InsufficientCredits:
            assert n > m.available
            return
        m.available -= n
        m.locked += n
        m.holds.append((r.hold.id, n))  # type: ignore[union-attr]
    elif kind in ("capture", "release") and m.holds:
        hold_id, held = m.holds.pop(int(step[1]) % len(m.holds))  # type: ignore[call-overload]
        if kind == "capture":
            take = min(int(step[2]), held)  # type: ignore[call-overload]
            await in_transaction(
                engine,
                lambda c: ws.capture_hold(c, hold_id=hold_id, credits=take, idempotency_key=key),
            )
            m.available += held - take
        else:
            await in_transaction(
                engine, lambda c: ws.release_credits(c, hold_id=hold_id, idempotency_key=key)
            )
            m.available += held
        m.locked -= held
        try:  # a closed hold stays closed
            await in_transaction(
                engine,
                lambda c: ws.release_credits(c, hold_id=hold_id, idempotency_key=f"{key}:again"),
            )
            raise AssertionError("a closed hold was released twice")
        except HoldNotActive:
            pass
    elif kind == "refund" and m.lots:
        lot_id = m.lots[int(step[1]) % len(m.lots)]  # type: ignore[call-overload]
        want = int(step[2])  # type: ignore[call-overload]
        try:
            r = await in_transaction(
                engine,
                lambda c: ws.refund_credits(
                    c, lot_id=lot_id, credits=want, idempotency_key=key, reason="r"
                ),
            )
        except InsufficientCredits as exc:
            assert want > int(exc.extra["refundable_credits"])  # type: ignore[call-overload]
            return
        assert want <= m.available
        m.available -= want
    elif kind == "replay" and last:
        name, args = last[-1]
        fn = ws.grant_credits if name == "grant" else ws.consume_credits
        r = await in_transaction(engine, lambda c: fn(c, **args))  # type: ignore[arg-type]
        assert r.replayed


async def test_random_operation_sequences_keep_every_invariant(engine: AsyncEngine) -> None:
    for ops in _collect():
        wallet = await new_wallet(engine)
        model = Model()
        done: list[tuple[str, dict[str, object]]] = []
        for step in ops:
            await _apply(engine, wallet.id, model, step, done)
        wid = wallet.id
        w = await in_transaction(engine, lambda c, w=wid: ws.get_wallet(c, w))
        assert (w.available_credits, w.locked_credits) == (model.available, model.locked), ops
        report = await in_transaction(engine, lambda c, w=wid: ws.sync_balance(c, w))
        assert report.consistent, (report.drift, ops)
