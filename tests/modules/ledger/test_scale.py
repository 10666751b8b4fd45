"""A ledger whose costs do not grow with it: the balance trigger's plan, house balances from
the roll-up, statement pages on an index range, and incremental `ledger verify`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.gauges import HouseBalances, house_accounts_sql
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.ledger.model import House, Journal, Ledger, Leg
from commdesk_billing.modules.ledger.reads import account_balances
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.repository import STATEMENT_PAGE_SQL
from tests.conftest import new_wallet

# Session settings under which a planner would walk tables instead of probing indexes: what
# stale or missing statistics can make it choose. The trigger must not follow them.
_DEGRADED = (
    "SET enable_indexscan = off",
    "SET enable_bitmapscan = off",
    "SET enable_nestloop = off",
    "SET enable_indexonlyscan = off",
)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _house(key: str, amount: int) -> Journal:
    return Journal(
        idempotency_key=key,
        kind="test.house",
        created_at=datetime.now(UTC),
        legs=(
            Leg(House.GATEWAY_CLEARING, Ledger.INR, amount),
            Leg(House.REFUNDS_PAYABLE, Ledger.INR, -amount),
        ),
    )


async def _scans(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """(sequential scans, index scans) of the ledger's tables in this transaction so far."""
    rows = await conn.fetch(
        "SELECT relname, seq_scan, coalesce(idx_scan, 0) AS idx_scan"
        " FROM pg_stat_xact_user_tables"
        " WHERE relname IN ('ledger_entries', 'ledger_accounts')"
    )
    return {r["relname"]: (int(r["seq_scan"]), int(r["idx_scan"])) for r in rows}


async def test_balance_trigger_probes_indexes_whatever_the_planner_is_told(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    for i in range(20):
        await in_transaction(scratch_engine, lambda c, i=i: post_journal(c, _house(f"h{i}", 5)))
    conn = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        for statement in _DEGRADED:
            await conn.execute(statement)
        jid = uuid.uuid4()
        async with conn.transaction():
            # Control: under these settings the old trigger's query walks ledger_entries.
            before = await _scans(conn)
            await conn.fetch(
                "SELECT e.journal_id FROM ledger_entries e WHERE e.journal_id IN"
                " (SELECT unnest(CAST($1 AS uuid[]))) GROUP BY e.journal_id",
                [jid],
            )
            control = await _scans(conn)
            assert control["ledger_entries"][0] == before["ledger_entries"][0] + 1

            await conn.execute(
                "INSERT INTO ledger_journals (id, idempotency_key, kind, created_at)"
                " VALUES ($1, $2, 'raw', now())",
                jid,
                f"raw:{jid}",
            )
            await conn.execute(
                "INSERT INTO ledger_entries (journal_id, account_id, ledger, amount,"
                " created_at) VALUES ($1, $2, 'INR', 7, now()), ($1, $3, 'INR', -7, now())",
                jid,
                House.GATEWAY_CLEARING,
                House.REFUNDS_PAYABLE,
            )
            after = await _scans(conn)
        # The trigger read both tables through their indexes only: one probe per journal of
        # the statement, one per leg's account. No scan of either table.
        assert after["ledger_entries"][0] == control["ledger_entries"][0]
        assert after["ledger_accounts"][0] == control.get("ledger_accounts", (0, 0))[0]
        assert after["ledger_entries"][1] > control["ledger_entries"][1]
        assert after["ledger_accounts"][1] >= control.get("ledger_accounts", (0, 0))[1] + 2
    finally:
        await conn.close()


async def test_an_unbalanced_statement_is_still_refused_under_degraded_settings(
    scratch_database_url: str,
) -> None:
    conn = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        for statement in _DEGRADED:
            await conn.execute(statement)
        jid = uuid.uuid4()
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO ledger_journals (id, idempotency_key, kind, created_at)"
                " VALUES ($1, $2, 'raw', now())",
                jid,
                f"raw:{jid}",
            )
            await conn.execute(
                "INSERT INTO ledger_entries (journal_id, account_id, ledger, amount,"
                " created_at) VALUES ($1, $2, 'INR', 7, now()), ($1, $3, 'INR', -7, now())",
                jid,
                House.GATEWAY_CLEARING,
                House.REFUNDS_PAYABLE,
            )
            # A later statement adding one leg to the balanced journal unbalances it.
            try:
                await conn.execute(
                    "INSERT INTO ledger_entries (journal_id, account_id, ledger, amount,"
                    " created_at) VALUES ($1, $2, 'INR', 1, now())",
                    jid,
                    House.GATEWAY_CLEARING,
                )
            except asyncpg.CheckViolationError as exc:
                assert "does not balance on ledger INR (off by 1)" in str(exc)
            else:
                raise AssertionError("an unbalancing leg was accepted")
    finally:
        await conn.close()


async def test_house_balances_are_the_rollup_plus_the_unsealed_tail(
    scratch_engine: AsyncEngine,
) -> None:
    for i, amount in enumerate((1_00, 250_75, 3)):
        await in_transaction(
            scratch_engine, lambda c, i=i, a=amount: post_journal(c, _house(f"s{i}", a))
        )
    sealed = await seal_pending(scratch_engine, block_size=3)
    assert sealed.entries == 6
    await in_transaction(scratch_engine, lambda c: post_journal(c, _house("tail", 9_99)))
    ids = [House.GATEWAY_CLEARING, House.REFUNDS_PAYABLE]
    async with scratch_engine.connect() as conn:
        rolled = {
            r.account_id: int(r.balance)
            for r in (await conn.execute(text("SELECT account_id, balance FROM ledger_rollups")))
        }
        balances = await account_balances(conn, ids)
        summed = {
            r.account_id: int(r.total)
            for r in await conn.execute(
                text(
                    "SELECT account_id, sum(amount) AS total FROM ledger_entries"
                    " WHERE account_id = ANY(:ids) GROUP BY account_id"
                ),
                {"ids": ids},
            )
        }
    # The roll-up is exactly the sealed legs; the read adds the one unsealed journal.
    assert rolled == {House.GATEWAY_CLEARING: 251_78, House.REFUNDS_PAYABLE: -251_78}
    assert balances == summed == {House.GATEWAY_CLEARING: 261_77, House.REFUNDS_PAYABLE: -261_77}
    assert (await verify_ledger(scratch_engine)).ok


async def test_house_accounts_are_found_by_an_index_not_a_scan_of_every_account(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    for _ in range(3):
        await new_wallet(scratch_engine)
    conn = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        # A tiny table would be read whole anyway: ask whether an index can bound the read
        # (bitmap scans only: they need an index condition, a plain index scan does not).
        await conn.execute("SET enable_seqscan = off")
        await conn.execute("SET enable_indexscan = off")

        async def plan(sql: str) -> str:
            return "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}"))

        ours = await plan(house_accounts_sql().text)
        # The partial index holds no wallet account (on a large table the planner takes two
        # ranges of it, `code ~>=~ 'inr:' AND code ~<~ 'inr;'` and the credits' one).
        assert "ledger_accounts_house" in ours and "Seq Scan" not in ours, ours
        # Control: the form it replaced has no index condition: every account is read, two
        # per wallet.
        old = await plan(house_accounts_sql().text.replace("wallet_id IS NULL AND (", "("))
        assert "ledger_accounts_house" not in old and "Index Cond" not in old, old
    finally:
        await conn.close()
    balances = await HouseBalances().read(scratch_engine)
    assert "inr:deferred_revenue" in balances and "credits:issuance:purchase" in balances
    assert not any(code.startswith("wallet:") for code in balances)


async def test_a_deep_statement_page_is_an_index_range_in_a_generic_plan(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    wallet = await new_wallet(scratch_engine, 100)
    for i in range(3):
        await in_transaction(
            scratch_engine,
            lambda c, i=i: ws.consume_credits(
                c, wallet_id=wallet.id, credits=1, idempotency_key=f"p{i}", reason="page"
            ),
        )
    conn = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        # A pooled prepared statement ends up on a generic plan: the plan must bound the
        # index by the cursor itself, not filter every newer line on the way down.
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute("SET enable_seqscan = off")  # a tiny table would be read whole

        async def plan(sql: str) -> str:
            name = f"p{uuid.uuid4().hex[:8]}"
            sql = sql.replace(":w", "$1").replace(":before", "$2").replace(":limit", "$3")
            await conn.execute(f"PREPARE {name}(uuid, bigint, int) AS {sql}")
            rows = await conn.fetch(f"EXPLAIN EXECUTE {name}('{wallet.id}', 2, 50)")
            return "\n".join(r[0] for r in rows)

        ours = await plan(STATEMENT_PAGE_SQL)
        assert "Index Cond: ((wallet_id = $1) AND (seq < $2))" in ours, ours
        # Control: the form it replaced keeps the cursor out of the index condition.
        old = await plan(
            STATEMENT_PAGE_SQL.replace(
                "seq < :before", "(CAST(:before AS bigint) IS NULL OR seq < :before)"
            )
        )
        assert "seq < $2))" not in old.split("Index Cond:")[1].splitlines()[0], old
    finally:
        await conn.close()
    page = await in_transaction(
        scratch_engine, lambda c: ws.list_statement(c, wallet.id, before_seq=3, limit=10)
    )
    assert [line.seq for line in page] == [2, 1]


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BILLING_DATABASE_URL": url, "BILLING_LOG_JSON": "false"}
    return subprocess.run(
        [sys.executable, "-m", "commdesk_billing.cli", "ledger", "verify", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _spend(engine: AsyncEngine, wallet_id: uuid.UUID, keys: list[str]) -> None:
    for key in keys:
        await in_transaction(
            engine,
            lambda c, k=key: ws.consume_credits(
                c, wallet_id=wallet_id, credits=3, idempotency_key=k, reason="spend"
            ),
        )


async def test_incremental_verify_walks_only_new_entries_and_full_finds_old_tampering(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    wallet = await new_wallet(scratch_engine, 1_000)
    await _spend(scratch_engine, wallet.id, ["a1", "a2", "a3"])
    await seal_pending(scratch_engine)

    first = await asyncio.to_thread(_cli, scratch_database_url)
    assert first.returncode == 0, first.stdout + first.stderr
    out = json.loads(first.stdout)
    # Nothing checkpointed yet: the first run walks every chain entry and checkpoints the
    # sealed end.
    wallet_legs = "SELECT count(*) FROM ledger_entries WHERE wallet_id IS NOT NULL AND id > :c"
    async with scratch_engine.connect() as conn:
        all_chained = (await conn.execute(text(wallet_legs), {"c": 0})).scalar_one()
        through = (
            await conn.execute(text("SELECT through_entry_id FROM ledger_verify_checkpoint"))
        ).scalar_one()
        entries = (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one()
    assert out["mode"] == "incremental" and out["since_entry_id"] == 0
    assert out["walks"]["wallet_chains"]["entries"] == all_chained >= 4
    assert through == entries

    await _spend(scratch_engine, wallet.id, ["b1", "b2"])
    await seal_pending(scratch_engine)
    async with scratch_engine.connect() as conn:
        new_chained = (await conn.execute(text(wallet_legs), {"c": through})).scalar_one()
        new_entries = (
            await conn.execute(
                text("SELECT count(*) FROM ledger_entries WHERE id > :c"), {"c": through}
            )
        ).scalar_one()
    second = json.loads((await asyncio.to_thread(_cli, scratch_database_url)).stdout)
    assert second["ok"] and second["since_entry_id"] == through
    # Only the two new debits' legs are walked.
    assert 2 <= second["walks"]["wallet_chains"]["entries"] == new_chained < all_chained
    assert second["walks"]["seals"]["entries"] == new_entries

    # Alter a checkpointed debit as only a superuser could (append-only trigger off): one
    # credit moved between its legs. The incremental walks trust the checkpointed prefix
    # (other modules' invariants, which run whole, still see the lots disagree); a full
    # re-walk finds the chain and the seal broken.
    conn = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        async with conn.transaction():
            await conn.execute(
                "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only"
            )
            await conn.execute(
                "UPDATE ledger_entries SET amount = amount"
                " + CASE WHEN wallet_id IS NULL THEN -1 ELSE 1 END WHERE journal_id ="
                " (SELECT journal_id FROM wallet_transactions WHERE idempotency_key = 'a2')"
            )
            await conn.execute(
                "ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only"
            )
    finally:
        await conn.close()
    trusted = json.loads((await asyncio.to_thread(_cli, scratch_database_url)).stdout)
    walked = {"wallet_chain", "seal_entries", "seal_chain", "journal_balanced"}
    assert not walked & {f["check"] for f in trusted["findings"]}, trusted["findings"]
    full = await asyncio.to_thread(_cli, scratch_database_url, "--full")
    assert full.returncode == 1
    found = json.loads(full.stdout)
    assert found["mode"] == "full"
    assert {f["check"] for f in found["findings"]} >= {"wallet_chain", "seal_entries"}
    assert found["walks"]["wallet_chains"]["entries"] == all_chained + new_chained
    assert found["walks"]["wallet_chains"]["entries_per_s"] > 0

    # Re-sealing history changes the checkpoint's block hash: incremental refuses it.
    conn = await asyncpg.connect(_dsn(scratch_database_url))
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE ledger_seals DISABLE TRIGGER ledger_seals_append_only")
            await conn.execute(
                "UPDATE ledger_seals SET seal_hash = sha256(seal_hash) WHERE block_no ="
                " (SELECT block_no FROM ledger_verify_checkpoint)"
            )
            await conn.execute("ALTER TABLE ledger_seals ENABLE TRIGGER ledger_seals_append_only")
    finally:
        await conn.close()
    resealed = await asyncio.to_thread(_cli, scratch_database_url)
    assert resealed.returncode == 1
    seal_findings = [
        f for f in json.loads(resealed.stdout)["findings"] if f["check"] == "seal_chain"
    ]
    assert len(seal_findings) == 1 and "rewritten" in seal_findings[0]["detail"]
