"""Incremental `ledger verify` walks only what changed since its checkpoint, and still catches
a tampered row of every wallet check: on a wallet touched after the checkpoint, and, for the
rows that may change (wallet rows, lots), on one that was not. What it cannot see (an old
statement line altered with the triggers off) the full walk finds.

Each tamper is written as a superuser would (triggers off), checked by an incremental run and
a full run (neither moves the checkpoint), and put back before the next."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import VerifyReport, verify_ledger
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource
from tests.conftest import grant_bought, new_wallet

# Each test on one backend and on two (`conftest.verify_jobs`): a full walk's findings are the
# same either way; an incremental walk stays on one.
pytestmark = pytest.mark.usefixtures("verify_jobs")


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _spend(engine: AsyncEngine, wallet_id: uuid.UUID, key: str, credits: int = 3) -> None:
    await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet_id, credits=credits, idempotency_key=key, reason="spend"
        ),
    )


@dataclass
class Books:
    url: str
    engine: AsyncEngine
    touched: uuid.UUID  # has entries after the checkpoint
    untouched: uuid.UUID  # has none

    @asynccontextmanager
    async def tampered(self, do: str, undo: str) -> AsyncIterator[None]:
        """Run `do` with every trigger off (as only a superuser could), then `undo`."""
        conn = await asyncpg.connect(_dsn(self.url))
        try:
            await self._as_superuser(conn, do)
            try:
                yield
            finally:
                await self._as_superuser(conn, undo)
        finally:
            await conn.close()

    async def _as_superuser(self, conn: asyncpg.Connection, sql: str) -> None:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(sql.format(a=self.touched, b=self.untouched))

    async def incremental(self) -> VerifyReport:
        return await verify_ledger(self.engine, incremental=True)

    async def full(self) -> VerifyReport:
        return await verify_ledger(self.engine)


def _found(report: VerifyReport) -> set[str]:
    return {f.check for f in report.findings}


async def _tampered_reports(books: Books, do: str, undo: str) -> tuple[VerifyReport, VerifyReport]:
    """(incremental, full) runs while `do` is in force; neither moves the checkpoint."""
    async with books.tampered(do, undo):
        return await books.incremental(), await books.full()


async def _sealed(engine: AsyncEngine) -> None:
    """Seal everything. The sealer waits for every older transaction on the server, in any
    database: a parallel test's long one would defer it, and the checkpoint would then cover
    less than the test says (seen once with four test processes)."""
    result = await seal_pending(engine, wait_s=120)
    assert result.skipped_reason is None, result


@pytest.fixture
async def books(scratch_database_url: str, scratch_engine: AsyncEngine) -> Books:
    touched = await new_wallet(scratch_engine, 1_000)
    untouched = await new_wallet(scratch_engine, 1_000)
    for w in (touched, untouched):
        await _spend(scratch_engine, w.id, f"old-1:{w.id}")
        await _spend(scratch_engine, w.id, f"old-2:{w.id}")
    await _sealed(scratch_engine)
    first = await verify_ledger(scratch_engine, incremental=True, checkpoint=True)
    assert first.ok and first.touched is None, [str(f) for f in first.findings]
    # After the checkpoint: two debits and a new purchase lot on one wallet only.
    await _spend(scratch_engine, touched.id, "new-1")
    await in_transaction(
        scratch_engine,
        lambda c: grant_bought(
            c,
            wallet_id=touched.id,
            credits=200,
            source=LotSource.purchase,
            idempotency_key="new-lot",
            reason="test funding",
            paid_paise=2_000,
            taxable_paise=1_694,
        ),
    )
    await _spend(scratch_engine, touched.id, "new-2", credits=1_100)  # draws on both lots
    await _sealed(scratch_engine)
    return Books(scratch_database_url, scratch_engine, touched.id, untouched.id)


_LINE = "(SELECT id FROM wallet_transactions WHERE idempotency_key = '{key}')"


async def test_an_incremental_run_walks_only_the_touched_wallet(books: Books) -> None:
    report = await books.incremental()
    assert report.ok, [str(f) for f in report.findings]
    assert report.touched == [books.touched]
    async with books.engine.connect() as conn:
        new_chained = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM ledger_entries WHERE wallet_id IS NOT NULL AND id >"
                    " (SELECT through_entry_id FROM ledger_verify_checkpoint)"
                )
            )
        ).scalar_one()
    assert report.walks["wallet_chains"] == new_chained
    assert report.stats["wallets_touched"] == 1


# (what is tampered, SQL, SQL putting it back, findings the incremental run must report)
TOUCHED = [
    (
        "a new statement line's opening balance",
        "UPDATE wallet_transactions SET balance_before = balance_before + 1"
        " WHERE idempotency_key = 'new-2'",
        "UPDATE wallet_transactions SET balance_before = balance_before - 1"
        " WHERE idempotency_key = 'new-2'",
        {"wallet_statement", "statement_journal"},
    ),
    (
        "a new lot movement's credits",
        f"UPDATE credit_lot_movements SET credits = credits + 1"
        f" WHERE wallet_transaction_id = {_LINE.format(key='new-1')}",
        f"UPDATE credit_lot_movements SET credits = credits - 1"
        f" WHERE wallet_transaction_id = {_LINE.format(key='new-1')}",
        {"lot_movements", "statement_lots"},
    ),
    (
        "a new lot movement's basis",
        f"UPDATE credit_lot_movements SET basis_paise = basis_paise + 1"
        f" WHERE wallet_transaction_id = {_LINE.format(key='new-1')}",
        f"UPDATE credit_lot_movements SET basis_paise = basis_paise - 1"
        f" WHERE wallet_transaction_id = {_LINE.format(key='new-1')}",
        {"lot_basis"},
    ),
    (
        "a new lot's journal",
        "UPDATE credit_lots SET journal_id = (SELECT journal_id FROM wallet_transactions"
        "  WHERE idempotency_key = 'new-1') WHERE wallet_id = '{a}' AND credits_granted = 200",
        "UPDATE credit_lots SET journal_id = (SELECT journal_id FROM wallet_transactions"
        "  WHERE idempotency_key = 'new-lot') WHERE wallet_id = '{a}' AND credits_granted = 200",
        {"lot_journal"},
    ),
    (
        "a lot's recognized basis",
        "UPDATE credit_lots SET recognized_paise = recognized_paise + 5"
        " WHERE wallet_id = '{a}' AND credits_granted = 200",
        "UPDATE credit_lots SET recognized_paise = recognized_paise - 5"
        " WHERE wallet_id = '{a}' AND credits_granted = 200",
        {"lot_basis", "recognized_revenue", "deferred_revenue"},
    ),
    (
        "a lot's reservation",
        "UPDATE credit_lots SET credits_reserved = credits_reserved + 1"
        " WHERE wallet_id = '{a}' AND credits_granted = 200",
        "UPDATE credit_lots SET credits_reserved = credits_reserved - 1"
        " WHERE wallet_id = '{a}' AND credits_granted = 200",
        {"refund_reservations"},
    ),
    (
        "the wallet row",
        "UPDATE wallets SET available_credits = available_credits + 1 WHERE id = '{a}'",
        "UPDATE wallets SET available_credits = available_credits - 1 WHERE id = '{a}'",
        {"wallet_balance", "wallet_lots", "wallet_statement"},
    ),
    (
        "a new chained entry",
        "UPDATE ledger_entries SET amount = amount + CASE WHEN wallet_id IS NULL"
        " THEN -1 ELSE 1 END WHERE journal_id = (SELECT journal_id FROM wallet_transactions"
        " WHERE idempotency_key = 'new-1') AND ledger = 'CREDITS'",
        "UPDATE ledger_entries SET amount = amount - CASE WHEN wallet_id IS NULL"
        " THEN -1 ELSE 1 END WHERE journal_id = (SELECT journal_id FROM wallet_transactions"
        " WHERE idempotency_key = 'new-1') AND ledger = 'CREDITS'",
        {"wallet_chain", "seal_entries"},
    ),
]


UNTOUCHED = [
    (
        "the wallet row's balance",
        "UPDATE wallets SET available_credits = available_credits + 1 WHERE id = '{b}'",
        "UPDATE wallets SET available_credits = available_credits - 1 WHERE id = '{b}'",
        {"wallet_balance"},
    ),
    (
        "the wallet row's chain head",
        "UPDATE wallets SET chain_head = sha256(chain_head) WHERE id = '{b}'",
        "UPDATE wallets SET chain_head = (SELECT entry_hash FROM ledger_entries"
        " WHERE wallet_id = '{b}' ORDER BY chain_seq DESC LIMIT 1) WHERE id = '{b}'",
        {"wallet_chain"},
    ),
    (
        "an old lot's remaining credits",
        "UPDATE credit_lots SET credits_remaining = credits_remaining - 1 WHERE wallet_id = '{b}'",
        "UPDATE credit_lots SET credits_remaining = credits_remaining + 1 WHERE wallet_id = '{b}'",
        {"lot_movements"},
    ),
    (
        "an old lot's refunded basis",
        "UPDATE credit_lots SET refunded_paise = refunded_paise + 1 WHERE wallet_id = '{b}'",
        "UPDATE credit_lots SET refunded_paise = refunded_paise - 1 WHERE wallet_id = '{b}'",
        {"lot_basis", "deferred_revenue"},
    ),
    (
        "an active hold of no journal",
        "INSERT INTO wallet_holds (id, wallet_id, credits, status, reason, idempotency_key,"
        " expires_at, purpose) VALUES ('00000000-0000-0000-0000-00000000000b', '{b}', 1,"
        " 'active', 'forged', 'forged-hold', now() + interval '1 day', 'spend')",
        "DELETE FROM wallet_holds WHERE id = '00000000-0000-0000-0000-00000000000b'",
        {"wallet_holds"},
    ),
]


# The touched wallet's rows, and the rows of the untouched wallet that may change.
CAUGHT = [("touched: " + t[0], *t[1:]) for t in TOUCHED] + [
    ("untouched: " + t[0], *t[1:]) for t in UNTOUCHED
]


@pytest.mark.parametrize(("what", "do", "undo", "expected"), CAUGHT, ids=[t[0] for t in CAUGHT])
async def test_a_tampered_wallet_row_is_caught_incrementally_and_by_the_full_walk(
    books: Books, what: str, do: str, undo: str, expected: set[str]
) -> None:
    incremental, full = await _tampered_reports(books, do, undo)
    assert expected <= _found(incremental), (what, [str(f) for f in incremental.findings])
    assert expected <= _found(full), what
    assert (await books.incremental()).ok  # put back, nothing is left to find


RECORDS = [
    (
        "an untouched wallet's verified row",
        "UPDATE ledger_verify_wallets SET available = available - 1 WHERE wallet_id = '{b}'",
        "UPDATE ledger_verify_wallets SET available = available + 1 WHERE wallet_id = '{b}'",
        {"wallet_balance"},
    ),
    (
        "an untouched wallet's verified statement line",
        "UPDATE ledger_verify_wallets SET statement_seq = statement_seq - 1"
        " WHERE wallet_id = '{b}'",
        "UPDATE ledger_verify_wallets SET statement_seq = statement_seq + 1"
        " WHERE wallet_id = '{b}'",
        {"wallet_statement"},
    ),
    (
        "a lot's verified movement sums",
        "UPDATE wallet_verify_lots SET credits_moved = credits_moved + 1, basis_moved ="
        " basis_moved + 1 WHERE lot_id IN (SELECT id FROM credit_lots WHERE wallet_id = '{b}')",
        "UPDATE wallet_verify_lots SET credits_moved = credits_moved - 1, basis_moved ="
        " basis_moved - 1 WHERE lot_id IN (SELECT id FROM credit_lots WHERE wallet_id = '{b}')",
        {"lot_movements", "lot_basis"},
    ),
    (
        "the carried recognized revenue",
        "UPDATE ledger_verify_figures SET value = value + 1"
        " WHERE name = 'lot_basis.recognized_paise'",
        "UPDATE ledger_verify_figures SET value = value - 1"
        " WHERE name = 'lot_basis.recognized_paise'",
        {"recognized_revenue"},
    ),
    (
        "a touched wallet's verified sum",
        "UPDATE ledger_verify_sums SET balance = balance + 1"
        " WHERE account_id = (SELECT available_account_id FROM wallets WHERE id = '{a}')",
        "UPDATE ledger_verify_sums SET balance = balance - 1"
        " WHERE account_id = (SELECT available_account_id FROM wallets WHERE id = '{a}')",
        {"wallet_balance", "ledger_balanced"},
    ),
]


@pytest.mark.parametrize(("what", "do", "undo", "expected"), RECORDS, ids=[t[0] for t in RECORDS])
async def test_a_tampered_verification_record_is_caught(
    books: Books, what: str, do: str, undo: str, expected: set[str]
) -> None:
    # The records only serve incremental runs: a full run rebuilds them.
    incremental, full = await _tampered_reports(books, do, undo)
    assert expected <= _found(incremental), (what, [str(f) for f in incremental.findings])
    assert full.ok, what


async def test_what_an_incremental_run_cannot_see_the_full_walk_finds(books: Books) -> None:
    # An old statement line of a wallet with no entry since the checkpoint, altered with the
    # append-only trigger off: no incremental run reads it again; the full walk does.
    incremental, full = await _tampered_reports(
        books,
        "UPDATE wallet_transactions SET balance_before = balance_before + 1"
        " WHERE idempotency_key = 'old-2:{b}'",
        "UPDATE wallet_transactions SET balance_before = balance_before - 1"
        " WHERE idempotency_key = 'old-2:{b}'",
    )
    assert incremental.ok, [str(f) for f in incremental.findings]
    assert {"wallet_statement", "statement_journal"} <= _found(full)
