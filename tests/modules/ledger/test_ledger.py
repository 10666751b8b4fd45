"""The ledger's guarantees, enforced by PostgreSQL itself and checked by `ledger verify`."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.ledger.model import House, Journal, Ledger, Leg
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource
from tests.conftest import new_wallet


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _house_journal(key: str, amount: int = 100) -> Journal:
    return Journal(
        idempotency_key=key,
        kind="test.house",
        created_at=datetime.now(UTC),
        legs=(
            Leg(House.GATEWAY_CLEARING, Ledger.INR, amount),
            Leg(House.REFUNDS_PAYABLE, Ledger.INR, -amount),
        ),
    )


async def test_balanced_journal_posts_once_per_key(engine: AsyncEngine) -> None:
    key = f"test:{uuid.uuid4()}"
    assert await in_transaction(engine, lambda c: post_journal(c, _house_journal(key)))
    assert not await in_transaction(engine, lambda c: post_journal(c, _house_journal(key, 5)))
    async with engine.connect() as conn:
        legs = (
            (
                await conn.execute(
                    text(
                        "SELECT e.amount FROM ledger_entries e"
                        " JOIN ledger_journals j ON j.id = e.journal_id"
                        " WHERE j.idempotency_key = :k ORDER BY e.id"
                    ),
                    {"k": key},
                )
            )
            .scalars()
            .all()
        )
    assert legs == [100, -100]


async def test_database_refuses_an_unbalanced_journal_from_raw_sql(database_url: str) -> None:
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        jid = uuid.uuid4()
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO ledger_journals (id, idempotency_key, kind, created_at)"
                " VALUES ($1, $2, 'raw', now())",
                jid,
                f"raw:{jid}",
            )
            with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
                await conn.execute(
                    "INSERT INTO ledger_entries (journal_id, account_id, ledger, amount,"
                    " created_at) VALUES ($1, $2, 'INR', 100, now()), ($1, $3, 'INR', -99, now())",
                    jid,
                    House.GATEWAY_CLEARING,
                    House.REFUNDS_PAYABLE,
                )
    finally:
        await conn.close()


async def test_database_refuses_entries_on_unknown_or_wrong_ledger_accounts(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        for account, ledger in ((uuid.uuid4(), "INR"), (House.CONSUMED_PLATFORM, "INR")):
            jid = uuid.uuid4()
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO ledger_journals (id, idempotency_key, kind, created_at)"
                        " VALUES ($1, $2, 'raw', now())",
                        jid,
                        f"raw:{jid}",
                    )
                    await conn.execute(
                        "INSERT INTO ledger_entries (journal_id, account_id, ledger, amount,"
                        " created_at) VALUES ($1, $2, $4, 5, now()), ($1, $3, 'INR', -5, now())",
                        jid,
                        account,
                        House.REFUNDS_PAYABLE,
                        ledger,
                    )
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries",
        "UPDATE ledger_journals SET kind = 'x'",
        "DELETE FROM wallet_transactions",
        "UPDATE wallet_transactions SET credits = 0",
        "DELETE FROM ledger_seals",
        "UPDATE ledger_accounts SET ledger = 'INR'",
        "DELETE FROM audit_logs",
        "DELETE FROM credit_lot_movements",
        "UPDATE credit_lots SET paid_paise = paid_paise + 1",
        "UPDATE credit_lots SET source = 'bonus' WHERE source = 'purchase'",
        "DELETE FROM credit_lots",
    ],
)
async def test_append_only_tables_refuse_changes_from_raw_sql(
    database_url: str, engine: AsyncEngine, statement: str
) -> None:
    await new_wallet(engine, 10)  # make sure there are rows to refuse changing
    await in_transaction(engine, lambda c: post_journal(c, _house_journal(f"t:{uuid.uuid4()}")))
    await seal_pending(engine)
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO audit_logs (id, actor_sub, actor_role, action, target_type,"
            " target_id) VALUES ($1, 't', 'auditor', 'test', 'none', '-')",
            uuid.uuid4(),
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"append-only|may only"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_wallet_row_cannot_go_negative_even_from_raw_sql(
    database_url: str, engine: AsyncEngine
) -> None:
    wallet = await new_wallet(engine, 5)
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE wallets SET available_credits = -1 WHERE id = $1", wallet.id)
    finally:
        await conn.close()


def _verify_cli(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BILLING_DATABASE_URL": url, "BILLING_LOG_JSON": "false"}
    return subprocess.run(
        [sys.executable, "-m", "commdesk_billing.cli", "ledger", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _tamper(url: str, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(_dsn(url))
    try:
        async with conn.transaction():
            # Only a superuser can do this; it is the attack `ledger verify` exists to catch.
            await conn.execute(
                "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only"
            )
            await conn.execute(sql, *args)
            await conn.execute(
                "ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only"
            )
    finally:
        await conn.close()


@pytest.mark.slow
async def test_verify_names_the_wallet_account_whose_chain_was_tampered(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    wallet = await new_wallet(scratch_engine, 500)
    await in_transaction(
        scratch_engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=120, idempotency_key="d1", reason="spend"
        ),
    )
    clean = await asyncio.to_thread(_verify_cli, scratch_database_url)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "ledger OK" in clean.stdout

    # Move one credit between the two legs of the debit: the journal still balances and the
    # wallet row still matches, so only the hash chain can tell.
    await _tamper(
        scratch_database_url,
        """
        UPDATE ledger_entries SET amount = amount + CASE WHEN wallet_id IS NULL THEN -1 ELSE 1 END
         WHERE journal_id = (SELECT journal_id FROM wallet_transactions
                              WHERE idempotency_key = 'd1')""",
    )
    dirty = await asyncio.to_thread(_verify_cli, scratch_database_url)
    assert dirty.returncode == 1
    assert "wallet_chain" in dirty.stdout
    assert f"wallet:{wallet.id}:available" in dirty.stdout


@pytest.mark.usefixtures("verify_jobs")
@pytest.mark.slow
async def test_verify_names_the_seal_block_of_a_tampered_house_leg(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    await new_wallet(scratch_engine, 50)
    key = f"house:{uuid.uuid4()}"
    await in_transaction(scratch_engine, lambda c: post_journal(c, _house_journal(key, 700)))
    sealed = await seal_pending(scratch_engine, block_size=2)
    assert sealed.blocks >= 2
    assert (await verify_ledger(scratch_engine)).ok

    # Rewrite both house legs consistently: balanced, no wallet involved, only the seal knows.
    await _tamper(
        scratch_database_url,
        """
        UPDATE ledger_entries SET amount = amount * 2
         WHERE journal_id = (SELECT id FROM ledger_journals WHERE idempotency_key = $1)""",
        key,
    )
    report = await verify_ledger(scratch_engine)
    # The two legs may fall in one block or two (blocks of 2 entries): each is named. The
    # house accounts' roll-ups, kept by the sealer, no longer match their legs either.
    assert {f.check for f in report.findings} == {"seal_entries", "ledger_rollup"}
    sealed = [f for f in report.findings if f.check == "seal_entries"]
    assert 1 <= len(sealed) <= 2
    assert all(f.subject.startswith("seal block ") for f in sealed)
    # Each of the two accounts is off by exactly the tampered 700 (other journals of the
    # database may have moved them too).
    gaps = sorted(
        int(m[2]) - int(m[1])
        for f in report.findings
        if f.check == "ledger_rollup"
        for m in [re.fullmatch(r"roll-up says (-?\d+), its sealed legs sum to (-?\d+)", f.detail)]
        if m
    )
    assert gaps == [-700, 700]
    dirty = await asyncio.to_thread(_verify_cli, scratch_database_url)
    assert dirty.returncode == 1 and "seal block" in dirty.stdout


@pytest.mark.usefixtures("verify_jobs")
async def test_verify_catches_a_deleted_wallet_entry_and_row_drift(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    wallet = await new_wallet(scratch_engine, 300)
    await in_transaction(
        scratch_engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=100, idempotency_key="d2", reason="spend"
        ),
    )
    await _tamper(
        scratch_database_url,
        """
        DELETE FROM ledger_entries WHERE journal_id = (
            SELECT journal_id FROM wallet_transactions WHERE idempotency_key = 'd2')""",
    )
    checks = {f.check for f in (await verify_ledger(scratch_engine)).findings}
    assert {"wallet_chain", "wallet_balance", "journal_legs"} <= checks


@pytest.mark.usefixtures("verify_jobs")
async def test_sealer_waits_for_transactions_that_drew_lower_ids(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    """An entry with a lower id committing after a higher one must not be skipped."""
    early = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        tr = early.transaction()
        await tr.start()
        jid = uuid.uuid4()
        await early.execute(
            "INSERT INTO ledger_journals (id, idempotency_key, kind, created_at)"
            " VALUES ($1, $2, 'late', now())",
            jid,
            f"late:{jid}",
        )
        await early.execute(
            "INSERT INTO ledger_entries (journal_id, account_id, ledger, amount, created_at)"
            " VALUES ($1, $2, 'INR', 9, now()), ($1, $3, 'INR', -9, now())",
            jid,
            House.GATEWAY_CLEARING,
            House.REFUNDS_PAYABLE,
        )
        # A later transaction draws higher ids and commits first.
        await in_transaction(
            scratch_engine, lambda c: post_journal(c, _house_journal(f"later:{uuid.uuid4()}"))
        )
        deferred = await seal_pending(scratch_engine, wait_s=0.3)
        assert deferred.blocks == 0 and deferred.skipped_reason
        await tr.commit()
    finally:
        await early.close()
    done = await seal_pending(scratch_engine)
    assert done.entries == 4
    report = await verify_ledger(scratch_engine)
    assert report.ok and report.stats["unsealed_entries"] == 0


async def test_in_transaction_retries_serialization_failures(engine: AsyncEngine) -> None:
    calls = 0

    async def flaky(conn: object) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            async with engine.connect() as c:  # a real 40001 from PostgreSQL
                await c.execute(
                    text("DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '40001'; END $$")
                )
        return "done"

    assert await in_transaction(engine, flaky) == "done"
    assert calls == 3

    async def broken(conn: object) -> None:
        async with engine.connect() as c:
            await c.execute(text("SELECT 1/0"))

    with pytest.raises(DBAPIError):
        await in_transaction(engine, broken)


@pytest.mark.usefixtures("verify_jobs")
async def test_sealer_waits_for_a_writer_whose_xid_is_newer_than_the_snapshot_horizon(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    """U takes its transaction id first, T second; T draws the lower entry id, U commits.
    The snapshot's xmax then stops at T's id, so waiting on it alone would seal U's entry
    and skip T's for ever."""
    u = await asyncpg.connect(_dsn(scratch_database_url))
    t = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        tu, tt = u.transaction(), t.transaction()
        await tu.start()
        await tt.start()
        await u.fetchval("SELECT pg_current_xact_id()")
        await t.fetchval("SELECT pg_current_xact_id()")

        async def post(conn: asyncpg.Connection, label: str) -> None:
            jid = uuid.uuid4()
            await conn.execute(
                "INSERT INTO ledger_journals (id, idempotency_key, kind, created_at)"
                " VALUES ($1, $2, 'race', now())",
                jid,
                f"{label}:{jid}",
            )
            await conn.execute(
                "INSERT INTO ledger_entries (journal_id, account_id, ledger, amount, created_at)"
                " VALUES ($1, $2, 'INR', 3, now()), ($1, $3, 'INR', -3, now())",
                jid,
                House.GATEWAY_CLEARING,
                House.REFUNDS_PAYABLE,
            )

        await post(t, "t")  # lower entry ids, newer transaction id
        await post(u, "u")
        await tu.commit()
        deferred = await seal_pending(scratch_engine, wait_s=0.3)
        assert deferred.blocks == 0 and deferred.skipped_reason
        await tt.commit()
    finally:
        await u.close()
        await t.close()
    done = await seal_pending(scratch_engine)
    assert done.entries == 4
    report = await verify_ledger(scratch_engine)
    assert report.ok and report.stats["unsealed_entries"] == 0


@pytest.mark.usefixtures("verify_jobs")
async def test_verify_ties_lots_and_statement_lines_to_their_journals(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    wallet = await new_wallet(scratch_engine, 200, source=LotSource.promotional)
    await in_transaction(
        scratch_engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=50, idempotency_key="d3", reason="spend"
        ),
    )
    assert (await verify_ledger(scratch_engine)).ok
    conn = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        async with conn.transaction():
            # Turn free credits into "paid" ones, which would make them refundable.
            await conn.execute("ALTER TABLE credit_lots DISABLE TRIGGER credit_lots_fixed")
            await conn.execute(
                "UPDATE credit_lots SET source = 'purchase', paid_paise = 2000,"
                " taxable_paise = 1694 WHERE wallet_id = $1",
                wallet.id,
            )
            await conn.execute("ALTER TABLE credit_lots ENABLE TRIGGER credit_lots_fixed")
            # And rewrite a statement line's story without touching the ledger.
            await conn.execute(
                "ALTER TABLE wallet_transactions DISABLE TRIGGER wallet_transactions_append_only"
            )
            await conn.execute(
                "UPDATE wallet_transactions SET credits = 40, balance_after = balance_before - 40"
                " WHERE idempotency_key = 'd3'"
            )
            await conn.execute(
                "ALTER TABLE wallet_transactions ENABLE TRIGGER wallet_transactions_append_only"
            )
    finally:
        await conn.close()
    checks = {f.check for f in (await verify_ledger(scratch_engine)).findings}
    assert {"lot_journal", "statement_journal", "statement_lots"} <= checks
