"""`ledger verify`'s revenue checks (DESIGN §10), each shown failing on a deliberate tamper.

Each case funds a wallet as a purchase does (basis in the lot, its money in deferred
revenue), spends from it (revenue recognized in the debit's journal), checks the books are
clean, then changes one record behind the application's back — as only a superuser could —
and expects the named check to catch it.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.wallet import service as ws
from tests.conftest import new_wallet
from tests.harness.databases import tamper

_TABLES = ("credit_lots", "credit_lot_movements", "ledger_entries")


async def _tamper(url: str, sql: str, *args: object) -> None:
    await tamper(url, sql, *args, tables=_TABLES)


async def _spend(engine: AsyncEngine, wallet_id: uuid.UUID, credits: int) -> None:
    await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c,
            wallet_id=wallet_id,
            credits=credits,
            idempotency_key=f"spend:{uuid.uuid4()}",
            reason="spend",
        ),
    )


_LOT = "(SELECT id FROM credit_lots WHERE wallet_id = $1)"

TAMPERS = {
    # The lot claims more was recognized than its movements moved and the ledger holds.
    "lot recognized more": (
        f"UPDATE credit_lots SET recognized_paise = recognized_paise + 1 WHERE id = {_LOT}",
        {"lot_basis", "deferred_revenue", "recognized_revenue"},
    ),
    # A movement says it moved more basis than the lot recorded.
    "movement basis": (
        f"UPDATE credit_lot_movements SET basis_paise = basis_paise + 5 "
        f"WHERE lot_id = {_LOT} AND basis_paise > 0",
        {"lot_basis"},
    ),
    # The debit's journal recognized twice what the lot did (both INR legs, balanced).
    "journal recognized more": (
        "UPDATE ledger_entries SET amount = amount * 2 "
        "WHERE account_id IN ($2, $3) AND journal_id IN (SELECT journal_id "
        "FROM wallet_transactions WHERE wallet_id = $1 AND transaction_type = 'debit')",
        {"lot_basis", "deferred_revenue", "recognized_revenue"},
    ),
    # Basis moved from recognized to refunded with no refund behind it.
    "refund with no refund": (
        f"UPDATE credit_lots SET recognized_paise = recognized_paise - 10, "
        f"refunded_paise = refunded_paise + 10 WHERE id = {_LOT}",
        {"refund_basis", "recognized_revenue"},
    ),
}


@pytest.mark.parametrize("case", list(TAMPERS))
async def test_each_revenue_check_catches_its_tamper(
    case: str, scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    wallet = await new_wallet(scratch_engine, 3000)  # a ₹300 purchase's base credits
    await _spend(scratch_engine, wallet.id, 100)
    clean = await verify_ledger(scratch_engine)
    assert clean.ok, clean.findings
    sql, expected = TAMPERS[case]
    accounts = (House.DEFERRED_REVENUE, House.PLATFORM_REVENUE) if "$2" in sql else ()
    await _tamper(scratch_database_url, sql, wallet.id, *accounts)
    report = await verify_ledger(scratch_engine)
    assert {f.check for f in report.findings} == expected, report.findings


async def test_a_spent_lot_with_basis_left_is_named(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    """The lot and its movements agree with each other, but the lot has no credits left and
    still holds basis: some consumption did not recognize its share."""
    wallet = await new_wallet(scratch_engine, 300)
    await _spend(scratch_engine, wallet.id, 300)
    assert (await verify_ledger(scratch_engine)).ok
    await _tamper(
        scratch_database_url,
        f"""UPDATE credit_lots SET recognized_paise = recognized_paise - 3 WHERE id = {_LOT};
            UPDATE credit_lot_movements SET basis_paise = basis_paise - 3
             WHERE lot_id = {_LOT} AND basis_paise > 0""".replace("$1", f"'{wallet.id}'"),
    )
    report = await verify_ledger(scratch_engine)
    found = {(f.check, f.detail) for f in report.findings}
    assert ("lot_basis", "no credits left but 3 paise of basis not recognized or refunded") in found
    assert {f.check for f in report.findings} == {
        "lot_basis",
        "deferred_revenue",
        "recognized_revenue",
    }


async def test_recognition_moved_between_two_debits_is_named_per_line(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    """5 paise of one debit's recognition moved to another's journal: every total and every
    lot still agrees; only the per-line check (movements against journal) sees it."""
    wallet = await new_wallet(scratch_engine, 3000)
    await _spend(scratch_engine, wallet.id, 100)
    await _spend(scratch_engine, wallet.id, 100)
    assert (await verify_ledger(scratch_engine)).ok
    await _tamper(
        scratch_database_url,
        """
        WITH debits AS (
            SELECT journal_id, row_number() OVER (ORDER BY seq) AS n FROM wallet_transactions
             WHERE wallet_id = $1 AND transaction_type = 'debit')
        UPDATE ledger_entries e
           SET amount = e.amount + CASE WHEN d.n = 1 THEN 5 ELSE -5 END * sign(e.amount)
          FROM debits d WHERE e.journal_id = d.journal_id AND e.account_id IN ($2, $3)""",
        wallet.id,
        House.DEFERRED_REVENUE,
        House.PLATFORM_REVENUE,
    )
    report = await verify_ledger(scratch_engine)
    assert {f.check for f in report.findings} == {"lot_basis"}
    assert len(report.findings) == 2, report.findings  # the two lines, each named
