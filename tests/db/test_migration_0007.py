"""Migration 0007 (revenue recognized at consumption) on a database that lived before it.

A fresh database is migrated to 0006 and filled, in plain SQL, the way the 0006-era code
wrote its books: one wallet with its two ledger accounts; purchases with their lots, their
`payment.captured` journal (gateway clearing, deferred revenue, GST payable) and payment
rows; a bonus lot and a promotional lot; debits drawing lots FIFO (statement lines, lot
movements, CREDITS journals, every wallet leg hash-chained); refunds as the refunds module
books them (a refund hold earmarking the lots, its capture, `refund.owed` and `refund.paid`),
one of them still in flight. Upgraded to head, each lot's recognized basis must be what the
migration's rule says, the backfill journal must move exactly their sum from deferred to
platform revenue, and `ledger verify` must find nothing at all: the data is complete, so
every check runs, not only the revenue ones. The refund in flight then settles and the rest
is spent through the application, and the books must still be clean.

An empty database upgrading 0006 -> head posts no backfill journal.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.modules.ledger.chain import entry_hash
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.refunds import processing
from commdesk_billing.modules.refunds import repository as refunds_repo
from commdesk_billing.modules.refunds.allocation import Parts, Purchase, next_refund
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.recognition import share
from tests.harness.databases import ADMIN_URL, _dsn, _url_of, drop_database

_BACKFILL_KEY = "recognition:backfill:0007"
# Intra-state packs split GST into CGST + SGST; the inter-state one is all IGST.
_PACK_150 = Purchase(15000, 12712, 1144, 1144, 0, 1500, 0)
_PACK_150_IGST = Purchase(15000, 12712, 0, 0, 2288, 1500, 0)
_PACK_300 = Purchase(30000, 25424, 2288, 2288, 0, 3000, 200)


@pytest.fixture
async def at_0006() -> AsyncIterator[str]:
    """A database of its own, created empty and migrated to 0006 (not a clone of the run's
    template, which is at head); dropped at the end."""
    name = f"cdb_mig0007_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_dsn(ADMIN_URL))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = _url_of(name)
        await asyncio.to_thread(upgrade, url, "0006")
        yield url
    finally:
        await drop_database(name)


async def _to_head(url: str) -> None:
    await asyncio.to_thread(upgrade, url, "head")


@pytest.fixture
async def engine_of(at_0006: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(Settings(database_url=at_0006), pool_size=2)
    try:
        yield eng
    finally:
        await eng.dispose()


# --- the 0006-era books, in plain SQL ---------------------------------------------------

Leg = tuple[uuid.UUID, str, int, uuid.UUID | None]  # account, ledger, amount, wallet


@dataclass
class _Lot:
    id: uuid.UUID
    source: str
    granted: int
    taxable: int
    remaining: int
    refunded: int = 0
    reserved: int = 0
    expires_at: datetime | None = None


@dataclass
class _Payment:
    purchase: Purchase
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    standing: Parts = field(default_factory=Parts)
    refunded_paise: int = 0
    lots: dict[str, _Lot] = field(default_factory=dict)


class _Era0006:
    """Writes what the 0006-era wallet, payments and refunds code wrote, row by row."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.user_id = uuid.uuid4()
        self.wallet_id = uuid.uuid4()
        self.available_account = uuid.uuid4()
        self.held_account = uuid.uuid4()
        self.available = self.locked = self.lifetime = 0
        self.chain_seq, self.chain_head = 0, None
        self.statement_seq = 0
        self.lots: list[_Lot] = []
        self._at = datetime.now(UTC) - timedelta(days=3)

    def tick(self) -> datetime:
        self._at += timedelta(minutes=1)
        return self._at

    async def open_wallet(self) -> None:
        await self.conn.execute(
            "INSERT INTO users (id, external_id) VALUES ($1, $2)",
            self.user_id,
            f"user-{self.user_id.hex}",
        )
        await self.conn.execute(
            """INSERT INTO wallets (id, owner_type, owner_id, available_account_id,
                                    held_account_id) VALUES ($1, 'user', $2, $3, $4)""",
            self.wallet_id,
            self.user_id,
            self.available_account,
            self.held_account,
        )
        for account, what in ((self.available_account, "available"), (self.held_account, "held")):
            await self.conn.execute(
                """INSERT INTO ledger_accounts (id, code, ledger, kind, normal_side,
                                                allow_negative, wallet_id, name)
                   VALUES ($1, $2, 'CREDITS', $3, 'credit', false, $4, $5)""",
                account,
                f"wallet:{self.wallet_id}:{what}",
                f"wallet_{what}",
                self.wallet_id,
                f"Wallet {what} credits",
            )

    async def journal(self, key: str, kind: str, legs: Sequence[Leg], at: datetime) -> uuid.UUID:
        """A journal and its legs (one INSERT: the balance trigger checks per statement);
        wallet legs carry the wallet's hash chain, in order."""
        journal_id = uuid.uuid4()
        await self.conn.execute(
            """INSERT INTO ledger_journals (id, idempotency_key, kind, description, metadata,
                                            created_at) VALUES ($1, $2, $3, $4, '{}', $5)""",
            journal_id,
            key,
            kind,
            key,
            at,
        )
        rows: list[tuple[object, ...]] = []
        for account, ledger, amount, wallet in legs:
            if wallet is None:
                rows.append((account, ledger, amount, None, None, None, None))
                continue
            self.chain_seq += 1
            digest = entry_hash(
                prev=self.chain_head,
                wallet_id=wallet,
                seq=self.chain_seq,
                journal_id=journal_id,
                account_id=account,
                ledger=ledger,
                amount=amount,
                created_at=at,
            )
            rows.append((account, ledger, amount, wallet, self.chain_seq, self.chain_head, digest))
            self.chain_head = digest
        cols = list(zip(*rows, strict=True))
        await self.conn.execute(
            """INSERT INTO ledger_entries (journal_id, account_id, ledger, amount, wallet_id,
                                           chain_seq, prev_hash, entry_hash, created_at)
               SELECT $1, a, l, m, w, s, p, h, $9
                 FROM unnest($2::uuid[], $3::text[], $4::bigint[], $5::uuid[], $6::bigint[],
                             $7::bytea[], $8::bytea[]) WITH ORDINALITY AS t(a, l, m, w, s, p, h, n)
                ORDER BY n""",
            journal_id,
            *[list(c) for c in cols],
            at,
        )
        return journal_id

    def wallet_leg(self, account: uuid.UUID, amount: int) -> Leg:
        return (account, "CREDITS", amount, self.wallet_id)

    async def line(
        self,
        kind: str,
        credits: int,
        available_delta: int,
        key: str,
        journal_id: uuid.UUID,
        at: datetime,
        *,
        hold_id: uuid.UUID | None = None,
        lot_id: uuid.UUID | None = None,
        moves: Sequence[tuple[_Lot, int]] = (),
    ) -> None:
        line_id = uuid.uuid4()
        self.statement_seq += 1
        before, self.available = self.available, self.available + available_delta
        await self.conn.execute(
            """INSERT INTO wallet_transactions (id, wallet_id, seq, transaction_type, credits,
                   balance_before, balance_after, source, idempotency_key, journal_id, hold_id,
                   lot_id, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
            line_id,
            self.wallet_id,
            self.statement_seq,
            kind,
            credits,
            before,
            self.available,
            kind,
            key,
            journal_id,
            hold_id,
            lot_id,
            at,
        )
        for lot, credits_moved in moves:
            await self.conn.execute(
                """INSERT INTO credit_lot_movements (lot_id, wallet_transaction_id, credits,
                                                     created_at) VALUES ($1, $2, $3, $4)""",
                lot.id,
                line_id,
                credits_moved,
                at,
            )

    async def grant(
        self,
        source: str,
        credits: int,
        *,
        paid: int = 0,
        taxable: int = 0,
        ref: str | None = None,
        expires_at: datetime | None = None,
    ) -> _Lot:
        at = self.tick()
        key = f"payment:{ref}:{source}" if ref else f"grant:{uuid.uuid4()}"
        journal_id = await self.journal(
            f"wallet:{key}",
            f"grant.{source}",
            [
                (House.ISSUANCE[source], "CREDITS", credits, None),
                self.wallet_leg(self.available_account, -credits),
            ],
            at,
        )
        lot = _Lot(uuid.uuid4(), source, credits, taxable, credits, expires_at=expires_at)
        await self.conn.execute(
            """INSERT INTO credit_lots (id, wallet_id, source, credits_granted,
                   credits_remaining, paid_paise, taxable_paise, source_ref, journal_id,
                   granted_at, expires_at, updated_at)
               VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10, $9)""",
            lot.id,
            self.wallet_id,
            source,
            credits,
            paid,
            taxable,
            ref,
            journal_id,
            at,
            expires_at,
        )
        await self.line(
            source, credits, credits, key, journal_id, at, lot_id=lot.id, moves=[(lot, credits)]
        )
        if source == "purchase":
            self.lifetime += credits
        self.lots.append(lot)
        return lot

    async def purchase(self, p: Purchase, *, inter_state: bool = False) -> _Payment:
        """A credited pack: its payment row, its lots, and its money (payment.captured)."""
        pay = _Payment(p)
        at = self.tick()
        await self.conn.execute(
            """INSERT INTO payments (id, user_id, wallet_id, order_id, idempotency_key,
                   request_hash, kind, pack_code, pack_version, amount_paise, taxable_paise,
                   gst_amount_paise, cgst_paise, sgst_paise, igst_paise, gst_mode,
                   gst_rate_bp, buyer_state, seller_state, base_credits, bonus_credits,
                   credits_granted, status, order_expires_at, paid_at, credited_at)
               VALUES ($1, $2, $3, $4, $5, 'h', 'pack', $6, 1, $7, $8, $9, $10, $11, $12,
                       'inclusive', 1800, $13, '29', $14, $15, $16, 'CREDITED', $17, $17, $17)""",
            pay.id,
            self.user_id,
            self.wallet_id,
            f"order_{pay.id.hex[:20]}",
            f"order:{pay.id}",
            f"pack_{p.amount_paise // 100}",
            p.amount_paise,
            p.taxable_paise,
            p.cgst_paise + p.sgst_paise + p.igst_paise,
            p.cgst_paise,
            p.sgst_paise,
            p.igst_paise,
            "27" if inter_state else "29",
            p.base_credits,
            p.bonus_credits,
            p.base_credits + p.bonus_credits,
            at,
        )
        ref = str(pay.id)
        pay.lots["purchase"] = await self.grant(
            "purchase", p.base_credits, paid=p.amount_paise, taxable=p.taxable_paise, ref=ref
        )
        if p.bonus_credits:
            pay.lots["bonus"] = await self.grant("bonus", p.bonus_credits, ref=ref)
        gst = p.cgst_paise + p.sgst_paise + p.igst_paise
        await self.journal(
            f"payment:{pay.id}:inr",
            "payment.captured",
            [
                (House.GATEWAY_CLEARING, "INR", p.amount_paise, None),
                (House.DEFERRED_REVENUE, "INR", -p.taxable_paise, None),
                (House.GST_PAYABLE, "INR", -gst, None),
            ],
            self.tick(),
        )
        return pay

    def _fifo(self, credits: int) -> list[tuple[_Lot, int]]:
        order = sorted(
            (lot for lot in self.lots if lot.remaining > lot.reserved),
            key=lambda lot: (lot.expires_at is None, lot.expires_at or self._at),
        )  # the lots were granted in list order, so a stable sort keeps granted_at order
        draws, left = [], credits
        for lot in order:
            take = min(lot.remaining - lot.reserved, left)
            if take:
                draws.append((lot, take))
                left -= take
        assert left == 0
        return draws

    async def _lot_change(self, lot: _Lot, remaining: int, refunded: int, reserved: int) -> None:
        lot.remaining += remaining
        lot.refunded += refunded
        lot.reserved += reserved
        await self.conn.execute(
            """UPDATE credit_lots SET credits_remaining = $2, credits_refunded = $3,
                   credits_reserved = $4 WHERE id = $1""",
            lot.id,
            lot.remaining,
            lot.refunded,
            lot.reserved,
        )

    async def debit(self, credits: int) -> None:
        """A platform debit as 0006 booked it: credits only, no revenue moved."""
        at = self.tick()
        key = f"debit:{uuid.uuid4()}"
        journal_id = await self.journal(
            f"wallet:{key}",
            "debit",
            [
                self.wallet_leg(self.available_account, credits),
                (House.CONSUMED_PLATFORM, "CREDITS", -credits, None),
            ],
            at,
        )
        draws = self._fifo(credits)
        for lot, take in draws:
            await self._lot_change(lot, -take, 0, 0)
        await self.line(
            "debit", credits, -credits, key, journal_id, at, moves=[(lot, -k) for lot, k in draws]
        )

    async def request_refund(self, pay: _Payment, amount: int) -> tuple[uuid.UUID, Parts]:
        """Refund step 1: the refund row (CREATED) and its hold earmarking the lots."""
        parts = next_refund(pay.purchase, pay.standing, amount)
        pay.standing = pay.standing + parts
        refund_id, hold_id, at = uuid.uuid4(), uuid.uuid4(), self.tick()
        takes = self._takes(pay, parts)
        held = parts.credits
        key = f"refund:{refund_id}:hold"
        await self.conn.execute(
            """INSERT INTO wallet_holds (id, wallet_id, credits, status, reason,
                   idempotency_key, expires_at, created_at, purpose)
               VALUES ($1, $2, $3, 'active', 'refund', $4, $5, $6, 'refund')""",
            hold_id,
            self.wallet_id,
            held,
            key,
            at + timedelta(days=3650),
            at,
        )
        journal_id = await self.journal(
            f"wallet:{key}",
            "refund.hold",
            [
                self.wallet_leg(self.available_account, held),
                self.wallet_leg(self.held_account, -held),
            ],
            at,
        )
        for lot, c in takes:
            await self._lot_change(lot, 0, 0, c)
        self.locked += held
        await self.line("hold", held, -held, key, journal_id, at, hold_id=hold_id)
        await self.conn.execute(
            """INSERT INTO refunds (id, refund_ref, payment_id, wallet_id, order_id,
                   idempotency_key, requested_by, requested_role, reason, amount_paise,
                   taxable_paise, cgst_paise, sgst_paise, igst_paise, base_credits,
                   bonus_credits, purchase_lot_id, bonus_lot_id, hold_id, status, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, 'finance', 'finance_admin', 'changed mind',
                       $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 'CREATED', $17)""",
            refund_id,
            f"rf_{refund_id.hex}",
            pay.id,
            self.wallet_id,
            f"order_{pay.id.hex[:20]}",
            f"refund-key:{refund_id}",
            parts.amount_paise,
            parts.taxable_paise,
            parts.cgst_paise,
            parts.sgst_paise,
            parts.igst_paise,
            parts.base_credits,
            parts.bonus_credits,
            pay.lots["purchase"].id,
            pay.lots["bonus"].id if "bonus" in pay.lots else None,
            hold_id,
            at,
        )
        return refund_id, parts

    def _takes(self, pay: _Payment, parts: Parts) -> list[tuple[_Lot, int]]:
        takes = [(pay.lots["purchase"], parts.base_credits)] if parts.base_credits else []
        if parts.bonus_credits:
            takes.append((pay.lots["bonus"], parts.bonus_credits))
        return takes

    async def refund_succeeded(self, pay: _Payment, refund_id: uuid.UUID, parts: Parts) -> None:
        """Refund step 3 as 0006 did it: the hold captured (credits back to issuance, the
        lots refunded), refund.owed and refund.paid, the payment's refunded total."""
        at = self.tick()
        takes = self._takes(pay, parts)
        held = parts.credits
        key = f"refund:{refund_id}:capture"
        journal_id = await self.journal(
            f"wallet:{key}",
            "refund.credits",
            [
                self.wallet_leg(self.held_account, held),
                *[(House.ISSUANCE[lot.source], "CREDITS", -c, None) for lot, c in takes],
            ],
            at,
        )
        for lot, c in takes:
            await self._lot_change(lot, -c, c, -c)
        self.locked -= held
        hold_id = await self.conn.fetchval("SELECT hold_id FROM refunds WHERE id = $1", refund_id)
        await self.conn.execute(
            """UPDATE wallet_holds SET status = 'captured', captured_credits = credits,
                   closed_at = $2 WHERE id = $1""",
            hold_id,
            at,
        )
        await self.line(
            "refund",
            held,
            0,
            key,
            journal_id,
            at,
            hold_id=hold_id,
            lot_id=takes[0][0].id,
            moves=[(lot, -c) for lot, c in takes],
        )
        await self.journal(
            f"refund:{refund_id}:inr",
            "refund.owed",
            [
                (House.REFUNDS_PAYABLE, "INR", -parts.amount_paise, None),
                (House.DEFERRED_REVENUE, "INR", parts.taxable_paise, None),
                (House.GST_PAYABLE, "INR", parts.tax_paise, None),
            ],
            at,
        )
        await self.journal(
            f"refund:{refund_id}:paid",
            "refund.paid",
            [
                (House.REFUNDS_PAYABLE, "INR", parts.amount_paise, None),
                (House.GATEWAY_CLEARING, "INR", -parts.amount_paise, None),
            ],
            at,
        )
        await self.conn.execute(
            "UPDATE refunds SET status = 'SUCCESS', processed_at = $2 WHERE id = $1",
            refund_id,
            at,
        )
        pay.refunded_paise += parts.amount_paise
        await self.conn.execute(
            """UPDATE payments SET refund_amount_paise = $2, refunded = ($2 = amount_paise)
                WHERE id = $1""",
            pay.id,
            pay.refunded_paise,
        )

    async def close(self) -> None:
        await self.conn.execute(
            """UPDATE wallets SET available_credits = $2, locked_credits = $3,
                   lifetime_purchased_credits = $4, chain_seq = $5, chain_head = $6,
                   statement_seq = $7 WHERE id = $1""",
            self.wallet_id,
            self.available,
            self.locked,
            self.lifetime,
            self.chain_seq,
            self.chain_head,
            self.statement_seq,
        )


@dataclass(frozen=True)
class _Before:
    wallet_id: uuid.UUID
    lots: dict[str, _Lot]
    refund_in_flight: uuid.UUID


async def _write_0006_books(url: str) -> _Before:
    """One wallet's life before revenue recognition:

    - pack 150 (A): granted, then wholly consumed;
    - pack 300 (B, with a bonus lot): partly consumed, partly refunded (a SUCCESS refund),
      consumed again, and a second refund still in flight (its credits reserved);
    - promotional credits (zero basis, expiring first, so drawn first): wholly consumed;
    - pack 150 (C, inter-state): every credit refunded by a refund of all but 5 paise, so
      its lot is empty with 4 paise of basis neither consumed nor refunded;
    - pack 150 (D): untouched.
    """
    conn = await asyncpg.connect(_dsn(url))
    try:
        async with conn.transaction():
            era = _Era0006(conn)
            await era.open_wallet()
            a = await era.purchase(_PACK_150)
            b = await era.purchase(_PACK_300)
            promo = await era.grant(
                "promotional", 100, expires_at=datetime.now(UTC) + timedelta(days=30)
            )
            await era.debit(1700)  # promotional 100, all of A's 1500, 100 of B
            first, parts = await era.request_refund(b, 10000)
            await era.refund_succeeded(b, first, parts)
            await era.debit(500)  # 500 more of B
            in_flight, _ = await era.request_refund(b, 5000)
            c = await era.purchase(_PACK_150_IGST)
            emptied, parts = await era.request_refund(c, 14995)
            await era.refund_succeeded(c, emptied, parts)
            d = await era.purchase(_PACK_150)
            await era.close()
    finally:
        await conn.close()
    lots = {
        "A": a.lots["purchase"],
        "B": b.lots["purchase"],
        "B bonus": b.lots["bonus"],
        "promotional": promo,
        "C": c.lots["purchase"],
        "D": d.lots["purchase"],
    }
    return _Before(era.wallet_id, lots, in_flight)


def _documented_share(lot: dict[str, int]) -> int:
    """The migration's rule (its docstring): the lot's unrecognized basis * consumed /
    (consumed + remaining), half up, and all of it when no credits remain."""
    unrecognized = lot["taxable_paise"] - lot["refunded_paise"]
    consumed = lot["credits_granted"] - lot["credits_remaining"] - lot["credits_refunded"]
    if unrecognized <= 0:
        return 0
    if lot["credits_remaining"] == 0:
        return unrecognized
    if consumed == 0:
        return 0
    return share(unrecognized, consumed + lot["credits_remaining"], consumed)


async def _lot_rows(url: str) -> dict[uuid.UUID, dict[str, int]]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        rows = await conn.fetch(
            """SELECT id, credits_granted, credits_remaining, credits_refunded,
                      credits_reserved, taxable_paise, recognized_paise, refunded_paise,
                      backfilled_paise FROM credit_lots"""
        )
    finally:
        await conn.close()
    return {r["id"]: {k: v for k, v in dict(r).items() if k != "id"} for r in rows}


async def _balance(url: str, account: uuid.UUID) -> int:
    """A credit-normal house account's balance: minus the sum of its legs."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        return -int(
            await conn.fetchval(
                "SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE account_id = $1",
                account,
            )
        )
    finally:
        await conn.close()


async def _backfill_legs(url: str) -> dict[uuid.UUID, int]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        rows = await conn.fetch(
            """SELECT e.account_id, e.ledger, e.amount, e.wallet_id FROM ledger_entries e
                 JOIN ledger_journals j ON j.id = e.journal_id
                WHERE j.idempotency_key = $1""",
            _BACKFILL_KEY,
        )
    finally:
        await conn.close()
    assert all(r["ledger"] == "INR" and r["wallet_id"] is None for r in rows), rows
    return {r["account_id"]: r["amount"] for r in rows}


async def test_the_backfill_recognizes_what_was_consumed_before_it(
    at_0006: str, engine_of: AsyncEngine
) -> None:
    before = await _write_0006_books(at_0006)
    deferred_before = await _balance(at_0006, House.DEFERRED_REVENUE)
    # The 0006 books are whole: deferred revenue is every purchase's taxable value less
    # what the succeeded refunds took out of it.
    assert deferred_before == 3 * 12712 + 25424 - 8475 - 12708

    await _to_head(at_0006)
    lots = await _lot_rows(at_0006)
    by_name = {name: lots[lot.id] for name, lot in before.lots.items()}
    for name, lot in by_name.items():
        assert lot["recognized_paise"] == _documented_share(lot), name
        assert lot["backfilled_paise"] - lot["refunded_paise"] == lot["recognized_paise"], name
    # The same figures by hand: A all; B 16949 * 600 / 2000 = 5084.7 -> 5085 (the refunded
    # basis first, the in-flight refund's 500 reserved credits counted as remaining); C the
    # 4 paise its refunds left on an empty lot; nothing for zero-basis and untouched lots.
    assert {n: lot["recognized_paise"] for n, lot in by_name.items()} == {
        "A": 12712,
        "B": 5085,
        "B bonus": 0,
        "promotional": 0,
        "C": 4,
        "D": 0,
    }
    assert by_name["B"]["refunded_paise"] == 8475 and by_name["C"]["refunded_paise"] == 12708
    recognized = sum(lot["recognized_paise"] for lot in lots.values())
    assert recognized == 17801
    assert await _backfill_legs(at_0006) == {
        House.DEFERRED_REVENUE: recognized,
        House.PLATFORM_REVENUE: -recognized,
    }
    assert await _balance(at_0006, House.DEFERRED_REVENUE) == deferred_before - recognized
    assert await _balance(at_0006, House.PLATFORM_REVENUE) == recognized

    report = await verify_ledger(engine_of)
    assert report.ok, "\n".join(str(f) for f in report.findings)

    # Running the migrations again changes nothing (Alembic is at head).
    await _to_head(at_0006)
    assert await _backfill_legs(at_0006) == {
        House.DEFERRED_REVENUE: recognized,
        House.PLATFORM_REVENUE: -recognized,
    }

    # Life goes on: the refund that was in flight succeeds, the rest is spent.
    async def settle(conn: AsyncConnection) -> None:
        refund = await refunds_repo.get(conn, before.refund_in_flight, lock=True)
        assert refund is not None
        await processing._settle(conn, refund, "Cashfree says SUCCESS (test)", {})

    await in_transaction(engine_of, settle)
    wallet = await in_transaction(engine_of, lambda c: ws.get_wallet(c, before.wallet_id))
    await in_transaction(
        engine_of,
        lambda c: ws.consume_credits(
            c,
            wallet_id=before.wallet_id,
            credits=wallet.available_credits,
            idempotency_key=f"after:{before.wallet_id}",
            reason="everything left",
        ),
    )
    report = await verify_ledger(engine_of)
    assert report.ok, "\n".join(str(f) for f in report.findings)
    for name, lot in (await _lot_rows(at_0006)).items():
        assert lot["credits_remaining"] == 0, name
        assert lot["recognized_paise"] + lot["refunded_paise"] == lot["taxable_paise"], name
    assert await _balance(at_0006, House.DEFERRED_REVENUE) == 0


async def test_an_empty_database_posts_no_backfill_journal(
    at_0006: str, engine_of: AsyncEngine
) -> None:
    await _to_head(at_0006)
    conn = await asyncpg.connect(_dsn(at_0006))
    try:
        assert await conn.fetchval("SELECT count(*) FROM ledger_journals") == 0
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 0
        codes = {r["code"] for r in await conn.fetch("SELECT code FROM ledger_accounts")}
    finally:
        await conn.close()
    assert {"inr:platform_fee_revenue", "inr:breakage_revenue"} <= codes
    report = await verify_ledger(engine_of)
    assert report.ok, report.findings
