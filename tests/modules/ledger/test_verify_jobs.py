"""A full chain walk shared among backends (`verify_ledger(..., jobs=N)`): every backend reads
the run's one snapshot, and the report is what one backend gives, findings and counts alike.
Helper connections never outlive the walk, however it ends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger import invariants
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import (
    VerifyReport,
    check,
    snapshot_connections,
    verify_ledger,
)
from commdesk_billing.modules.wallet import service as ws
from tests.conftest import new_wallet

_WALLETS = 8


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _spend(engine: AsyncEngine, wallet_id: uuid.UUID, key: str) -> None:
    await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet_id, credits=3, idempotency_key=key, reason="spend"
        ),
    )


async def _books(engine: AsyncEngine) -> list[uuid.UUID]:
    """`_WALLETS` wallets of 2 chained entries each (a grant, a debit), in id order: with
    runs of 2 entries, about a run each."""
    wallets = [(await new_wallet(engine, 100)).id for _ in range(_WALLETS)]
    for w in wallets:
        await _spend(engine, w, f"d:{w}")
    await seal_pending(engine)
    return sorted(wallets)


async def _tamper(url: str, sql: str, *args: object) -> None:
    """`sql` with every trigger off, as only a superuser could."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(sql, *args)
    finally:
        await conn.close()


class _Walkers:
    """Which connection ran each run of the chain walk (by its lower wallet bound)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_run: dict[uuid.UUID, int] = {}
        self.before_walk: Callable[[AsyncConnection, int], Awaitable[None]] | None = None
        self._ids: dict[int, int] = {}
        real = invariants.rows

        async def spy(conn: AsyncConnection, sql: str, params: Any = None) -> list[Any]:
            if "WINDOW w AS" in sql:
                n = self._ids.setdefault(id(conn), len(self._ids))
                self.by_run[params["lo"]] = n
                if self.before_walk is not None:
                    await self.before_walk(conn, n)
            return await real(conn, sql, params)

        monkeypatch.setattr(invariants, "rows", spy)

    def reset(self) -> None:
        """Before another run: its connections are counted afresh, the run's own first."""
        self.by_run.clear()
        self._ids.clear()

    @property
    def connections(self) -> int:
        return len(set(self.by_run.values()))


async def _sessions(url: str) -> list[str]:
    """The states of every other session on the test's database."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        return [
            r["state"]
            for r in await conn.fetch(
                "SELECT state FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        ]
    finally:
        await conn.close()


def _same(one: VerifyReport, two: VerifyReport, *, in_order: bool = True) -> None:
    """The same findings (in the same order, unless `in_order` is off: other checks than the
    chain walk do not promise an order), stats and walked counts."""
    found = [str(f) for f in one.findings], [str(f) for f in two.findings]
    if not in_order:
        found = sorted(found[0]), sorted(found[1])
    assert found[1] == found[0]
    assert two.stats == one.stats
    assert two.walks == one.walks


async def test_two_backends_find_what_one_finds_in_either_half_of_the_runs(
    scratch_database_url: str, scratch_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallets = await _books(scratch_engine)
    monkeypatch.setattr(invariants, "_CHUNK_ENTRIES", 2)
    walkers = _Walkers(monkeypatch)
    told: list[tuple[int, int]] = []

    def progress(walk: str, done: int, total: int) -> None:
        if walk == "wallet_chains":
            told.append((done, total))

    clean_one = await verify_ledger(scratch_engine, checks=[invariants.wallet_chains])
    clean_two = await verify_ledger(
        scratch_engine, checks=[invariants.wallet_chains], jobs=2, walk_progress=progress
    )
    assert clean_one.ok and clean_two.ok, [str(f) for f in clean_two.findings]
    _same(clean_one, clean_two)
    assert clean_two.walks["wallet_chains"] == 2 * _WALLETS
    assert walkers.connections == 2
    # The same progress totals: told from 0, ending at every entry.
    assert told[0] == (0, 2 * _WALLETS) and told[-1] == (2 * _WALLETS, 2 * _WALLETS)

    # Tamper with a debit in the last wallet (the last run, in the second half of them) and
    # in the second (the run the second backend takes first).
    for w in (wallets[1], wallets[-1]):
        await _tamper(
            scratch_database_url,
            "UPDATE ledger_entries SET amount = amount + CASE WHEN wallet_id IS NULL"
            " THEN -1 ELSE 1 END WHERE journal_id = (SELECT journal_id FROM"
            " wallet_transactions WHERE idempotency_key = $1)",
            f"d:{w}",
        )
    _same(
        await verify_ledger(scratch_engine, jobs=1),
        await verify_ledger(scratch_engine, jobs=2),
        in_order=False,
    )
    one = await verify_ledger(scratch_engine, checks=[invariants.wallet_chains], jobs=1)
    walkers.reset()
    two = await verify_ledger(scratch_engine, checks=[invariants.wallet_chains], jobs=2)
    assert {f.subject.split()[1] for f in two.findings if f.check == "wallet_chain"} == {
        str(wallets[1]),
        str(wallets[-1]),
    }
    _same(one, two)
    # Both backends walked runs, and the second walked at least one of the tampered wallets'.
    assert walkers.connections == 2
    runs = sorted(walkers.by_run)
    tampered_runs = {max(lo for lo in runs if lo <= w) for w in (wallets[1], wallets[-1])}
    assert any(walkers.by_run[lo] == 1 for lo in tampered_runs), walkers.by_run


async def test_every_backend_reads_the_snapshot_of_the_run(
    scratch_database_url: str, scratch_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallets = await _books(scratch_engine)
    monkeypatch.setattr(invariants, "_CHUNK_ENTRIES", 2)
    walkers = _Walkers(monkeypatch)

    # Debits committed after the run's snapshot was taken and before the walk (so before the
    # helpers import it), on every wallet: a backend on a snapshot of its own would walk them.
    @check("debits_meanwhile")
    async def debits_meanwhile(conn: AsyncConnection, report: VerifyReport) -> None:
        for w in wallets:
            await _spend(scratch_engine, w, f"meanwhile:{w}")

    report = await verify_ledger(
        scratch_engine, checks=[debits_meanwhile, invariants.wallet_chains], jobs=2
    )
    assert walkers.connections == 2
    # Neither backend walked them (nor saw the wallet rows move: no head mismatch).
    assert report.walks["wallet_chains"] == 2 * _WALLETS
    assert report.ok, [str(f) for f in report.findings]
    after = await verify_ledger(scratch_engine, checks=[invariants.wallet_chains], jobs=2)
    assert after.ok and after.walks["wallet_chains"] == 3 * _WALLETS

    # Directly: the helpers' snapshot is the run's, and they cannot write.
    async with scratch_engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            before = (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one()
            await _spend(scratch_engine, wallets[0], "later")
            async with snapshot_connections(scratch_engine, conn, 3) as conns:
                assert len(conns) == 3 and conns[0] is conn
                seen = [
                    (
                        await c.execute(
                            text(
                                "SELECT pg_current_snapshot()::text,"
                                " (SELECT count(*) FROM ledger_entries)"
                            )
                        )
                    ).one()
                    for c in conns
                ]
                assert len(set(seen)) == 1 and seen[0][1] == before, seen
                for c in conns[1:]:
                    read_only = await c.execute(text("SHOW transaction_read_only"))
                    assert read_only.scalar_one() == "on"
            # Returned, their transactions ended: only this run's session is left.
            assert scratch_engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    assert all(s == "idle" for s in await _sessions(scratch_database_url))
    # Back in the pool as they were taken: neither read-only nor REPEATABLE READ.
    held = [await scratch_engine.connect() for _ in range(5)]
    try:
        for c in held:
            mode = (
                await c.execute(
                    text(
                        "SELECT current_setting('transaction_read_only'),"
                        " current_setting('transaction_isolation')"
                    )
                )
            ).one()
            assert tuple(mode) == ("off", "read committed")
            await c.rollback()
    finally:
        for c in held:
            await c.close()


async def test_a_failing_helper_fails_the_run_with_its_own_error_and_is_released(
    scratch_database_url: str, scratch_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _books(scratch_engine)
    monkeypatch.setattr(invariants, "_CHUNK_ENTRIES", 2)
    walkers = _Walkers(monkeypatch)

    async def helper_fails(conn: AsyncConnection, n: int) -> None:
        if n == 1:
            await conn.execute(text("SELECT 1 / 0"))

    walkers.before_walk = helper_fails
    with pytest.raises(DBAPIError, match="division by zero"):
        await verify_ledger(scratch_engine, jobs=2)
    assert scratch_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert "idle in transaction" not in await _sessions(scratch_database_url)
    assert "idle in transaction (aborted)" not in await _sessions(scratch_database_url)
    # The engine still serves a clean run.
    walkers.before_walk = None
    assert (await verify_ledger(scratch_engine, jobs=2)).ok


async def test_a_cancelled_walk_leaves_no_backend_behind(
    scratch_database_url: str, scratch_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _books(scratch_engine)
    monkeypatch.setattr(invariants, "_CHUNK_ENTRIES", 2)
    walkers = _Walkers(monkeypatch)
    sleeping = asyncio.Event()

    async def helper_stalls(conn: AsyncConnection, n: int) -> None:
        if n == 1:
            sleeping.set()
            await conn.execute(text("SELECT pg_sleep(60)"))

    walkers.before_walk = helper_stalls
    run = asyncio.create_task(verify_ledger(scratch_engine, jobs=2))
    await asyncio.wait_for(sleeping.wait(), 30)
    await asyncio.sleep(0.3)  # the sleep is on the server
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert scratch_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # The stalled statement was cancelled and its session closed: nothing left running.
    for _ in range(50):
        left = await _sessions(scratch_database_url)
        if not any(s != "idle" for s in left):
            break
        await asyncio.sleep(0.1)
    assert all(s == "idle" for s in left), left


def test_a_shared_walk_is_cut_so_that_every_backend_has_several_runs() -> None:
    one = invariants._run_entries(510_000, 1)
    two = invariants._run_entries(510_000, 2)
    assert one == invariants._CHUNK_ENTRIES
    # 3 runs on one backend (2 of them on one of two backends); 8 shared.
    assert -(-510_000 // one) == 3 and -(-510_000 // two) == 8
    # At 10M the runs stay at their size; a tiny ledger is not cut finer than 10 000 entries.
    assert invariants._run_entries(5_000_000, 2) == invariants._CHUNK_ENTRIES
    assert invariants._run_entries(1_000, 2) == 10_000
