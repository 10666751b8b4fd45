"""Property-based: random sequences of wallet operations against real PostgreSQL keep the
wallet, lot by lot, equal to a simple model, and every invariant intact.

A Hypothesis state machine drives the wallet one operation at a time and compares it with
the model after each, so a failing sequence is shrunk to a minimal program. Its rules are
synchronous; they run the service's coroutines on an event loop of the test's own (with an
engine of its own: asyncpg connections belong to one loop).

Refunds go the way production takes them (`modules/refunds/service.py`):
`reserve_for_refund` on a purchase's own lots, then `capture_refund` (Cashfree refunded) or
`release_refund` (it did not).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.errors import HoldNotActive, InsufficientCredits
from commdesk_billing.modules.wallet import refunds as wallet_refunds
from commdesk_billing.modules.wallet import repository as wallet_repo
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource
from tests.conftest import grant_bought, new_wallet

pytestmark = pytest.mark.slow

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[Any]]
Takes = list[tuple[uuid.UUID, int]]

# Lots expire on whole days from one fixed instant, so equal expiries (FIFO then falls back
# to the grant order) are drawn as often as different ones.
EPOCH = datetime(2099, 1, 1, tzinfo=UTC)

# Spends and refunds smaller than grants, so that the wallet is seldom empty and refunds
# find their credits as often as not.
credits = st.integers(min_value=1, max_value=400)
spend = st.integers(min_value=1, max_value=100)
expiry = st.none() | st.integers(min_value=1, max_value=3)


def _expires(days: int | None) -> datetime | None:
    return None if days is None else EPOCH + timedelta(days=days)


@dataclass
class MLot:
    expires_at: datetime | None
    order: int
    remaining: int
    reserved: int = 0
    refunded: int = 0

    @property
    def drawable(self) -> int:
        return self.remaining - self.reserved

    @property
    def fifo(self) -> tuple[bool, datetime, int]:
        # expires_at ASC NULLS LAST, then the grant order (DESIGN §3)
        return (self.expires_at is None, self.expires_at or EPOCH, self.order)


@dataclass
class Model:
    available: int = 0
    locked: int = 0
    lots: dict[uuid.UUID, MLot] = field(default_factory=dict)

    def grant(self, lot_id: uuid.UUID, n: int, expires_at: datetime | None) -> None:
        self.lots[lot_id] = MLot(expires_at, len(self.lots), n)
        self.available += n

    def draw(self, n: int) -> None:
        """Take n credits off the lots, FIFO, leaving what refunds have reserved."""
        for lot in sorted(self.lots.values(), key=lambda m: m.fifo):
            take = min(lot.drawable, n)
            lot.remaining -= take
            n -= take
        assert n == 0, "the model's lots cannot cover a draw its balance allowed"

    def state(self) -> tuple[int, int, dict[uuid.UUID, tuple[int, int, int]]]:
        lots = {i: (m.remaining, m.reserved, m.refunded) for i, m in self.lots.items()}
        return self.available, self.locked, lots


class WalletMachine(RuleBasedStateMachine):
    """One wallet per run of the machine; the test sets `loop` and `engine`."""

    loop: ClassVar[asyncio.AbstractEventLoop]
    engine: ClassVar[AsyncEngine]

    holds = Bundle("holds")  # open spend holds: (hold, credits)
    purchases = Bundle("purchases")  # credited purchases: (purchase lot, bonus lot or None)
    refunds = Bundle("refunds")  # open refunds: (hold, takes)

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.wallet_id = self.wait(new_wallet(self.engine)).id
        self.last: Work | None = None  # the last operation that changed something

    # --- running the service ---------------------------------------------------------------

    def wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def do(self, work: Work) -> Any:
        result = self.wait(in_transaction(self.engine, work))
        assert not result.replayed, "a fresh key was taken for a replay"
        self.last = work
        return result

    def refused(self, work: Work, error: type[Exception]) -> Any:
        with pytest.raises(error) as caught:
            self.wait(in_transaction(self.engine, work))
        return caught.value

    def stays_closed(self, hold_id: uuid.UUID) -> None:
        self.refused(
            lambda c: ws.release_credits(c, hold_id=hold_id, idempotency_key=_key()),
            HoldNotActive,
        )

    # --- rules -------------------------------------------------------------------------------

    @initialize(target=purchases, n=credits, bonus=st.integers(0, 100), days=expiry)
    def first_purchase(
        self, n: int, bonus: int, days: int | None
    ) -> tuple[uuid.UUID, uuid.UUID | None]:
        """Every run starts with a purchase: there is something to spend and to refund."""
        return self.buy(n, bonus, days)

    @rule(target=purchases, n=credits, bonus=st.integers(0, 100), days=expiry)
    def buy(self, n: int, bonus: int, days: int | None) -> tuple[uuid.UUID, uuid.UUID | None]:
        """A credited purchase: its purchase lot and maybe a bonus lot, as crediting grants
        them (`payments/crediting.py`)."""
        wid, key, expires, payment = self.wallet_id, _key(), _expires(days), str(uuid.uuid4())
        r = self.do(
            lambda c: grant_bought(
                c,
                wallet_id=wid,
                credits=n,
                source=LotSource.purchase,
                idempotency_key=f"{key}:purchase",
                reason="purchase",
                paid_paise=n * 10,
                taxable_paise=n * 10 * 100 // 118,
                expires_at=expires,
                source_ref=payment,
            )
        )
        purchase_lot = r.line.lot_id
        self.model.grant(purchase_lot, n, expires)
        if not bonus:
            return purchase_lot, None
        r = self.do(
            lambda c: ws.grant_credits(
                c,
                wallet_id=wid,
                credits=bonus,
                source=LotSource.bonus,
                idempotency_key=f"{key}:bonus",
                reason="bonus",
                expires_at=expires,
                source_ref=payment,
            )
        )
        self.model.grant(r.line.lot_id, bonus, expires)
        return purchase_lot, r.line.lot_id

    @rule(
        n=credits,
        source=st.sampled_from([LotSource.bonus, LotSource.promotional, LotSource.refund_reversal]),
        days=expiry,
    )
    def grant(self, n: int, source: LotSource, days: int | None) -> None:
        """Credits no refund takes back."""
        wid, key, expires = self.wallet_id, _key(), _expires(days)
        paid = n * 10 if source is LotSource.refund_reversal else 0
        r = self.do(
            lambda c: grant_bought(
                c,
                wallet_id=wid,
                credits=n,
                source=source,
                idempotency_key=key,
                reason="grant",
                paid_paise=paid,
                taxable_paise=paid * 100 // 118,
                expires_at=expires,
            )
        )
        self.model.grant(r.line.lot_id, n, expires)

    @rule(n=spend)
    def consume(self, n: int) -> None:
        wid, key = self.wallet_id, _key()

        def work(c: AsyncConnection) -> Awaitable[Any]:
            return ws.consume_credits(c, wallet_id=wid, credits=n, idempotency_key=key, reason="x")

        if n > self.model.available:
            exc = self.refused(work, InsufficientCredits)
            assert exc.extra == {"available_credits": self.model.available, "requested_credits": n}
            event("spend refused")
            return
        self.do(work)
        self.model.available -= n
        self.model.draw(n)

    @rule(target=holds, n=spend)
    def lock(self, n: int) -> object:
        wid, key = self.wallet_id, _key()

        def work(c: AsyncConnection) -> Awaitable[Any]:
            return ws.lock_credits(
                c, wallet_id=wid, credits=n, idempotency_key=key, reason="hold", ttl_s=600
            )

        if n > self.model.available:
            exc = self.refused(work, InsufficientCredits)
            assert exc.extra == {"available_credits": self.model.available, "requested_credits": n}
            event("spend refused")
            return multiple()
        r = self.do(work)
        self.model.available -= n
        self.model.locked += n
        return r.hold.id, n

    @rule(hold=consumes(holds), n=spend)
    def capture(self, hold: tuple[uuid.UUID, int], n: int) -> None:
        (hold_id, held), take, key = hold, min(n, hold[1]), _key()
        self.do(lambda c: ws.capture_hold(c, hold_id=hold_id, credits=take, idempotency_key=key))
        self.model.locked -= held
        self.model.available += held - take
        self.model.draw(take)
        self.stays_closed(hold_id)

    @rule(hold=consumes(holds))
    def release(self, hold: tuple[uuid.UUID, int]) -> None:
        (hold_id, held), key = hold, _key()
        self.do(lambda c: ws.release_credits(c, hold_id=hold_id, idempotency_key=key))
        self.model.locked -= held
        self.model.available += held
        self.stays_closed(hold_id)

    @rule(
        target=refunds,
        purchase=purchases,
        base=st.integers(0, 200),
        bonus=st.integers(0, 50),
    )
    def refund_hold(
        self, purchase: tuple[uuid.UUID, uuid.UUID | None], base: int, bonus: int
    ) -> object:
        """A refund opened (`refunds.service.open_refund`): `base` credits of the purchase
        lot, `bonus` of its bonus lot, held and earmarked on those lots."""
        purchase_lot, bonus_lot = purchase
        takes: Takes = [(purchase_lot, base)] if base else []
        if bonus and bonus_lot is not None:
            takes.append((bonus_lot, bonus))
        if not takes:
            return multiple()  # a refund of no credits is refused before it gets here
        m, wid, refund_id = self.model, self.wallet_id, uuid.uuid4()
        total = sum(c for _, c in takes)

        def work(c: AsyncConnection) -> Awaitable[Any]:
            return wallet_refunds.reserve_for_refund(
                c,
                wallet_id=wid,
                takes=takes,
                idempotency_key=f"refund:{refund_id}:hold",
                reason="refund",
                refund_ref=f"rf_{refund_id.hex}",
            )

        if total > m.available or any(m.lots[i].drawable < c for i, c in takes):
            exc = self.refused(work, InsufficientCredits)
            assert exc.extra == {"available_credits": m.available, "requested_credits": total}
            event("refund refused")
            return multiple()
        hold_id = self.do(work).hold.id
        m.available -= total
        m.locked += total
        for lot_id, c in takes:
            m.lots[lot_id].reserved += c
        event("refund held")
        # Only the refund settles its hold: the spend paths refuse it.
        self.refused(
            lambda c: ws.capture_hold(c, hold_id=hold_id, idempotency_key=_key()), HoldNotActive
        )
        self.stays_closed(hold_id)
        return hold_id, takes

    @rule(refund=consumes(refunds))
    def refund_succeeds(self, refund: tuple[uuid.UUID, Takes]) -> None:
        """Cashfree refunded: `refunds.service._settle` captures the hold."""
        self._settle(refund, succeeded=True)

    @rule(refund=consumes(refunds))
    def refund_fails(self, refund: tuple[uuid.UUID, Takes]) -> None:
        """Cashfree did not refund: `refunds.service._give_back` releases the hold."""
        self._settle(refund, succeeded=False)

    def _settle(self, refund: tuple[uuid.UUID, Takes], *, succeeded: bool) -> None:
        hold_id, takes = refund
        end, other = (
            (wallet_refunds.capture_refund, wallet_refunds.release_refund)
            if succeeded
            else (wallet_refunds.release_refund, wallet_refunds.capture_refund)
        )
        key = _key()
        if end is wallet_refunds.capture_refund:
            # The refund's taxable value, as refunds/allocation.py would give it for the
            # paise those base credits stand for (10 paise a credit at the test's price).
            lots = [
                self.wait(
                    in_transaction(self.engine, lambda c, i=lot_id: wallet_repo.get_lot(c, i))
                )
                for lot_id, _ in takes
            ]
            taxable = sum(
                (2 * c * 10 * lot.taxable_paise + lot.paid_paise) // (2 * lot.paid_paise)
                for lot, (_, c) in zip(lots, takes, strict=True)
                if lot is not None and lot.paid_paise
            )
            self.do(
                lambda c: wallet_refunds.capture_refund(
                    c,
                    hold_id=hold_id,
                    takes=takes,
                    idempotency_key=key,
                    reason="refund settled",
                    refund_ref="rf_prop",
                    taxable_paise=taxable,
                )
            )
        else:
            self.do(
                lambda c: wallet_refunds.release_refund(
                    c,
                    hold_id=hold_id,
                    takes=takes,
                    idempotency_key=key,
                    reason="refund settled",
                    refund_ref="rf_prop",
                )
            )
        m = self.model
        for lot_id, c in takes:
            lot = m.lots[lot_id]
            lot.reserved -= c
            if succeeded:
                lot.remaining -= c
                lot.refunded += c
            else:
                m.available += c
            m.locked -= c
        event("refund captured" if succeeded else "refund released")
        # Settled once: neither way settles it again.
        extra: dict[str, Any] = (
            {"taxable_paise": 0} if other is wallet_refunds.capture_refund else {}
        )
        self.refused(
            lambda c: other(
                c,
                hold_id=hold_id,
                takes=takes,
                idempotency_key=_key(),
                reason="again",
                refund_ref="rf_prop",
                **extra,
            ),
            HoldNotActive,
        )

    @precondition(lambda self: self.last is not None)
    @rule()
    def replay(self) -> None:
        """The last operation again, with its key: it changes nothing."""
        assert self.last is not None
        assert self.wait(in_transaction(self.engine, self.last)).replayed
        event("replayed")

    # --- after every step --------------------------------------------------------------------

    @invariant()
    def the_wallet_is_the_model_and_its_books_agree(self) -> None:
        stored, report = self.wait(self._stored())
        assert stored == self.model.state()
        assert report.consistent, report.drift

    @invariant()
    def every_lot_accounts_for_its_basis_to_the_paisa(self) -> None:
        """DESIGN §10: recognized + refunded never exceed the taxable value, equal it once a
        lot has no credits left, and are exactly what the lot's movements moved."""
        for lot in self.wait(self._bases()):
            used = lot.recognized_paise + lot.refunded_paise
            assert lot.recognized_paise >= 0 and 0 <= used <= lot.taxable_paise, lot
            assert used == lot.moved, lot
            if lot.credits_remaining == 0:
                assert used == lot.taxable_paise, lot

    async def _bases(self) -> list[Any]:
        async with self.engine.connect() as conn:
            return list(
                await conn.execute(
                    text("""
                    SELECT l.id, l.taxable_paise, l.recognized_paise, l.refunded_paise,
                           l.credits_remaining,
                           (SELECT coalesce(sum(basis_paise), 0) FROM credit_lot_movements m
                             WHERE m.lot_id = l.id) AS moved
                      FROM credit_lots l WHERE wallet_id = :w"""),
                    {"w": self.wallet_id},
                )
            )

    async def _stored(self) -> tuple[tuple[int, int, dict[uuid.UUID, tuple[int, int, int]]], Any]:
        async with self.engine.connect() as conn:
            w = (
                await conn.execute(
                    text("SELECT available_credits, locked_credits FROM wallets WHERE id = :w"),
                    {"w": self.wallet_id},
                )
            ).one()
            lots = (
                await conn.execute(
                    text("""SELECT id, credits_remaining, credits_reserved, credits_refunded
                              FROM credit_lots WHERE wallet_id = :w"""),
                    {"w": self.wallet_id},
                )
            ).all()
            # Entries, lots, holds and statement against the row (one statement, read-only).
            report = await ws.sync_balance(conn, self.wallet_id)
        lot_state = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in lots}
        return (int(w[0]), int(w[1]), lot_state), report


def _key() -> str:
    return f"prop:{uuid.uuid4()}"


def test_random_operation_sequences_keep_every_invariant(scratch_database_url: str) -> None:
    # A database of its own: the machine refunds at the wallet's level, without the refund
    # rows and INR journals the refunds module writes around it (which `ledger verify`
    # checks on the suite's database).
    loop = asyncio.new_event_loop()
    engine = make_engine(Settings(database_url=scratch_database_url), pool_size=2)
    WalletMachine.loop, WalletMachine.engine = loop, engine
    try:
        run_state_machine_as_test(
            WalletMachine,
            settings=settings(
                max_examples=30,
                stateful_step_count=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
