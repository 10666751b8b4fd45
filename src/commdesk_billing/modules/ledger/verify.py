"""Re-walk the ledger: every chain, every seal, every invariant of DESIGN §4.

Read-only. Each finding names what is wrong (a journal, a wallet and its account, a seal
block) so a person can start from it. Runs in one REPEATABLE READ transaction so all checks
see the same snapshot while postings continue.

This module is only the framework: `Finding`, `VerifyReport`, `Check` and `verify_ledger`.
The checks themselves live with the module that owns each rule, in its `invariants.py`
(`modules/ledger`, `modules/wallet`, `modules/refunds`, `modules/invoices`), and each of those
exports a tuple `CHECKS`. `commdesk_billing.wiring.verify_checks()` is the one place
that composes them, in the order their findings and stats are reported.

To add a check:

1. In the owning module's `invariants.py`, write an async `(conn, report) -> None` that only
   reads, and decorate it with `@check("name")` (the name is unique across all modules; the
   owner is the module it is defined in). Report each fault with
   `report.add(code, subject, detail)`: `code` is the stable finding code operators and the
   `billing_ledger_verify_findings_total{check}` metric see, `subject` names the row to start
   from. Counts go into `report.stats`.
2. Append it to that module's `CHECKS`.
3. A module with no `invariants.py` yet adds one and `wiring.py` adds its `CHECKS` to
   `verify_checks()`; nothing here changes.

`verify_ledger(engine, checks=[...])` runs only the given checks, in the same snapshot.

A long walk may share its statements among more backends (`verify_ledger(..., jobs=N)`,
`ledger verify --jobs`): `report.same_snapshot(conn, n)` opens n - 1 more connections, each in
a read-only REPEATABLE READ transaction that imports the run's snapshot
(`pg_export_snapshot` / `SET TRANSACTION SNAPSHOT`), so they read exactly what `conn` reads;
`in_turn` hands the walk's statements out among them. They are rolled back and returned (or,
if one was left mid-statement, dropped) however the walk ends.

Incremental verification (`ledger verify`; `ledger verify --full` walks everything): a
checkpoint (`ledger_verify_checkpoint`) says up to which entry id the last clean run walked —
always the end of a seal block, so every entry up to it was committed and sealed — and
`ledger_verify_sums` holds each account's sum of legs up to it. A check that can walk only
what is new reads `report.since` (all zeros on a full run) and walks entries after
`since.through_entry_id`, starting its chains from what that run verified. The run writes the
next checkpoint (`report.until`, the last seal block of its snapshot) only when it found
nothing.

What changed since the checkpoint is found through the ledger: `report.touched` is every
wallet with an entry after it (an index range of the entries' primary key; `None` on a full
run, meaning every wallet). Every wallet operation posts its journal, statement line, lot
changes and lot movements in one statement (`wallet/writer.py`), so a wallet with no entry
since has no new line or movement either. Checks of wallet rows, statement lines and lots
walk the touched wallets from what the last clean run verified of them:
`ledger_verify_wallets` (each wallet row's figures as verified: statement and chain position,
balances) and `wallet_verify_lots` (each lot's verified movement sums). A check that needs
such a record registers its writer with `report.on_checkpoint`; they run when the run is clean.
A running total that is not an account's sum is carried with `report.carry` /
`report.figures` (`ledger_verify_figures`, the total through the checkpoint).

What an incremental run trusts about the walked prefix, and why that is reasonable: entries,
journals, seals, statement lines and lot movements are append-only (triggers refuse UPDATE,
DELETE and TRUNCATE to every role the application uses), and each entry up to the checkpoint
is covered by a seal block whose hash the checkpoint keeps (the run checks that block still
carries it). Changing checkpointed history therefore takes a superuser disabling triggers and
re-writing the seals after it; `--full` re-walks every chain and seal from the first entry and
finds it. The rows that may legitimately change (wallet rows, lots, holds) are compared whole
on every run, without reading entries, lines or movements: every wallet row that no entry
touched must still equal what was verified, every lot's remaining credits and basis must
equal its verified movement sums plus its new movements, and reservations and active holds
are summed whole. What an incremental run cannot see: a statement line, lot movement or
entry inserted (or, with the triggers disabled, altered) for a wallet with no new entry, and
an altered lot's fixed fields (refused by `credit_lots_fixed`); `--full` re-walks all of them.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@dataclass(frozen=True)
class Finding:
    check: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.subject}: {self.detail}"


@dataclass(frozen=True)
class Checkpoint:
    """Where the last clean run stopped: every entry with id <= `through_entry_id` was walked,
    and that id ends seal block `block_no`, whose hash was `seal_hash`. All zeros: nothing
    walked yet, a full run."""

    through_entry_id: int = 0
    block_no: int = 0
    seal_hash: bytes | None = None

    @property
    def full(self) -> bool:
        return self.through_entry_id == 0


# (walk, entries done, entries to do): told as a long walk (chains, seals) advances.
WalkProgress = Callable[[str, int, int], None]


# What a check records for the next incremental run, written when the run is clean.
OnCheckpoint = Callable[[AsyncConnection], Awaitable[None]]


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    since: Checkpoint = field(default_factory=Checkpoint)
    # The entry id the next checkpoint will be: the end of the last seal block this run's
    # snapshot sees (0: nothing sealed yet).
    until: int = 0
    # Wallets with an entry after `since` (None on a full run: every wallet).
    touched: list[uuid.UUID] | None = None
    # Running totals carried by checks, as they were at `since` (empty on a full run).
    figures: dict[str, int] = field(default_factory=dict)
    walk_progress: WalkProgress | None = None
    # Entries each long walk covered (kept apart from `stats`, whose keys are the report's).
    walks: dict[str, int] = field(default_factory=dict)
    carried: dict[str, int] = field(default_factory=dict)
    records: list[OnCheckpoint] = field(default_factory=list)
    # Backends a long walk may use (`same_snapshot`); more only with an engine to open them.
    jobs: int = 1
    engine: AsyncEngine | None = field(default=None, repr=False)

    def same_snapshot(
        self, conn: AsyncConnection, jobs: int
    ) -> AbstractAsyncContextManager[list[AsyncConnection]]:
        """`conn` and up to `jobs - 1` more connections reading its snapshot (see
        `snapshot_connections`); only `conn` without an engine."""
        return snapshot_connections(self.engine, conn, jobs)

    def walked(self, walk: str, done: int, total: int) -> None:
        self.walks[walk] = done
        if self.walk_progress is not None:
            self.walk_progress(walk, done, total)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def incremental(self) -> bool:
        return not self.since.full

    def add(self, check: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(check, subject, detail))

    def figure(self, name: str) -> int:
        """A running total as the last clean run left it at `since` (0 on a full run)."""
        return self.figures.get(name, 0) if self.incremental else 0

    def carry(self, name: str, through_until: int) -> None:
        """Store a running total as it stands at `until`, for the next incremental run."""
        self.carried[name] = through_until

    def on_checkpoint(self, record: OnCheckpoint) -> None:
        """Write `record` (what this check verified, for the next run) if the run is clean."""
        self.records.append(record)


CheckFn = Callable[[AsyncConnection, VerifyReport], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    """One rule of `ledger verify`: a named async `(conn, report) -> None`.

    `owner` is the dotted name of the module that defines it (and owns the rule)."""

    name: str
    owner: str
    run: CheckFn

    async def __call__(self, conn: AsyncConnection, report: VerifyReport) -> None:
        await self.run(conn, report)


def check(name: str) -> Callable[[CheckFn], Check]:
    """Make a `Check` of a function, owned by the module the function is defined in."""

    def make(fn: CheckFn) -> Check:
        return Check(name=name, owner=fn.__module__, run=fn)

    return make


async def rows(conn: AsyncConnection, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    return list((await conn.execute(text(sql), params or {})).all())


async def count(conn: AsyncConnection, sql: str, params: dict[str, Any] | None = None) -> int:
    return int((await conn.execute(text(sql), params or {})).scalar_one())


# What `pg_export_snapshot()` returns (e.g. `00000004-0000002A-1`): checked before it is
# spliced into `SET TRANSACTION SNAPSHOT`, which takes no parameter.
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")


@asynccontextmanager
async def snapshot_connections(
    engine: AsyncEngine | None, conn: AsyncConnection, jobs: int
) -> AsyncIterator[list[AsyncConnection]]:
    """`[conn, *helpers]`: `jobs - 1` more connections from `engine`, each in a read-only
    REPEATABLE READ transaction on the snapshot of `conn`'s transaction (which must be
    REPEATABLE READ and open). Every helper is rolled back and returned on the way out,
    whatever ends the block (an error, a cancellation); one that cannot be (it was cancelled
    mid-statement) is dropped from the pool, which ends its backend's transaction."""
    if jobs <= 1 or engine is None:
        yield [conn]
        return
    snapshot = str((await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one())
    if not _SNAPSHOT_ID.fullmatch(snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    helpers: list[AsyncConnection] = []
    try:
        for _ in range(jobs - 1):
            helper = await engine.connect()
            helpers.append(helper)
            # asyncpg sends BEGIN with the first statement, so the import is the
            # transaction's first statement, as PostgreSQL requires.
            await helper.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            await helper.begin()
            await helper.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
        yield [conn, *helpers]
    finally:
        for helper in helpers:
            await _release(helper)


async def _release(helper: AsyncConnection) -> None:
    try:
        await helper.rollback()
        await helper.close()
    except BaseException:
        # Still busy with a cancelled statement, or its server went away: closing the
        # socket ends the backend's transaction all the same.
        await helper.invalidate()
        await helper.close()


async def in_turn(
    conns: Sequence[AsyncConnection],
    count: int,
    work: Callable[[AsyncConnection, int], Awaitable[None]],
) -> None:
    """Run `work(c, i)` for i in 0..count-1, each connection taking the next i as it
    finishes one (so a slow statement does not hold the others back). If one fails, the
    others finish the statement they are in and take no more; the first error is raised as
    it was. Cancelled, every statement in flight is cancelled with it."""
    todo = iter(range(count))
    failed = False

    async def worker(c: AsyncConnection) -> None:
        nonlocal failed
        for i in todo:
            if failed:
                return
            try:
                await work(c, i)
            except BaseException:
                failed = True
                raise

    if len(conns) == 1:
        await worker(conns[0])
        return
    outcomes = await asyncio.gather(*(worker(c) for c in conns), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


@dataclass(frozen=True)
class CheckRun:
    """One check as it ran: for progress lines and the report's timings."""

    index: int  # 1-based
    total: int
    name: str
    seconds: float
    findings: int  # found by this check


Progress = Callable[[CheckRun], None]


async def verify_ledger(
    engine: AsyncEngine,
    checks: Sequence[Check] | None = None,
    *,
    progress: Progress | None = None,
    incremental: bool = False,
    checkpoint: bool = False,
    walk_progress: WalkProgress | None = None,
    jobs: int = 1,
) -> VerifyReport:
    """Run `checks` (by default every module's, see `wiring.verify_checks`) in order,
    all in one REPEATABLE READ snapshot; `progress` is told after each check.

    `incremental`: walk only what is after the stored checkpoint. `checkpoint`: when nothing
    was found, store the next one (only meaningful with every check: a run of some checks
    must not vouch for the others). `jobs`: backends a full walk of the chains may use, each on
    this run's snapshot (what it finds and counts is the same with any number)."""
    if checks is None:
        # Imported here: the composition knows every module, the ledger must not at import.
        from commdesk_billing.wiring import verify_checks

        checks = verify_checks()
    report = VerifyReport(walk_progress=walk_progress, jobs=max(1, jobs), engine=engine)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            if incremental:
                report.since = await read_checkpoint(conn)
            report.until = await _last_sealed(conn)
            if report.incremental:
                report.touched = await touched_wallets(conn, report.since.through_entry_id)
                report.figures = {
                    r.name: int(r.value)
                    for r in await rows(conn, "SELECT name, value FROM ledger_verify_figures")
                }
            for index, c in enumerate(checks, start=1):
                before, started = len(report.findings), time.perf_counter()
                await c(conn, report)
                if progress is not None:
                    progress(
                        CheckRun(
                            index=index,
                            total=len(checks),
                            name=c.name,
                            seconds=time.perf_counter() - started,
                            findings=len(report.findings) - before,
                        )
                    )
            if checkpoint and report.ok:
                for record in report.records:
                    await record(conn)
                await write_checkpoint(conn, report)
    return report


async def _last_sealed(conn: AsyncConnection) -> int:
    return int(
        (
            await conn.execute(
                text(
                    "SELECT coalesce((SELECT last_entry_id FROM ledger_seals"
                    " ORDER BY block_no DESC LIMIT 1), 0)"
                )
            )
        ).scalar_one()
    )


async def touched_wallets(conn: AsyncConnection, after: int) -> list[uuid.UUID]:
    """Every wallet with an entry after `after`: a range of the entries' primary key."""
    return [
        r.wallet_id
        for r in await rows(
            conn,
            "SELECT DISTINCT wallet_id FROM ledger_entries"
            " WHERE id > :c AND wallet_id IS NOT NULL ORDER BY wallet_id",
            {"c": after},
        )
    ]


async def read_checkpoint(conn: AsyncConnection) -> Checkpoint:
    row = (
        await conn.execute(
            text(
                "SELECT through_entry_id, block_no, seal_hash FROM ledger_verify_checkpoint"
                " WHERE id = 1"
            )
        )
    ).first()
    if row is None:
        return Checkpoint()
    return Checkpoint(
        int(row.through_entry_id),
        int(row.block_no),
        bytes(row.seal_hash) if row.seal_hash is not None else None,
    )


async def write_checkpoint(conn: AsyncConnection, report: VerifyReport) -> Checkpoint:
    """Advance the checkpoint to `report.until` (the last seal block of this snapshot), adding
    the legs in between to the verified sums and storing the carried totals. In the run's own
    snapshot, so it covers exactly what the checks saw; a concurrent run writing it too fails
    with a serialization error."""
    since = report.since
    if report.until <= since.through_entry_id:
        return since
    last = (
        await conn.execute(
            text("SELECT block_no, seal_hash FROM ledger_seals WHERE last_entry_id = :t"),
            {"t": report.until},
        )
    ).one()
    if since.full:
        await conn.execute(text("DELETE FROM ledger_verify_sums"))
        await conn.execute(text("DELETE FROM ledger_verify_figures"))
    await conn.execute(
        text("""
        INSERT INTO ledger_verify_sums (account_id, balance)
        SELECT account_id, sum(amount) FROM ledger_entries
         WHERE id > :a AND id <= :b GROUP BY account_id
        ON CONFLICT (account_id) DO UPDATE
           SET balance = ledger_verify_sums.balance + EXCLUDED.balance"""),
        {"a": since.through_entry_id, "b": report.until},
    )
    if since.full:
        await conn.execute(text("ANALYZE ledger_verify_sums"))
    if report.carried:
        await conn.execute(
            text("""
            INSERT INTO ledger_verify_figures (name, value)
            SELECT * FROM unnest(CAST(:n AS text[]), CAST(:v AS bigint[]))
            ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"""),
            {"n": list(report.carried), "v": list(report.carried.values())},
        )
    await conn.execute(
        text("""
        INSERT INTO ledger_verify_checkpoint
               (id, through_entry_id, block_no, seal_hash, verified_at, full_at)
        VALUES (1, :t, :b, :h, now(), CASE WHEN :full THEN now() END)
        ON CONFLICT (id) DO UPDATE
           SET through_entry_id = EXCLUDED.through_entry_id, block_no = EXCLUDED.block_no,
               seal_hash = EXCLUDED.seal_hash, verified_at = EXCLUDED.verified_at,
               full_at = coalesce(EXCLUDED.full_at, ledger_verify_checkpoint.full_at)"""),
        {
            "t": report.until,
            "b": int(last.block_no),
            "h": bytes(last.seal_hash),
            "full": since.full,
        },
    )
    return Checkpoint(report.until, int(last.block_no), bytes(last.seal_hash))


async def record_wallets(
    conn: AsyncConnection, verified: Sequence[Any], *, replace_all: bool
) -> None:
    """Keep each verified wallet row's figures (`ledger_verify_wallets`): what an untouched
    wallet must still say, and where the next run starts its statement lines. `verified`
    rows have id, statement_seq, available_credits, locked_credits, chain_seq, chain_head."""
    if replace_all:
        await conn.execute(text("DELETE FROM ledger_verify_wallets"))
    if verified:
        await conn.execute(
            text("""
            INSERT INTO ledger_verify_wallets
                   (wallet_id, statement_seq, available, locked, chain_seq, chain_head)
            SELECT * FROM unnest(CAST(:w AS uuid[]), CAST(:s AS bigint[]),
                                 CAST(:a AS bigint[]), CAST(:l AS bigint[]),
                                 CAST(:c AS bigint[]), CAST(:h AS bytea[]))
            ON CONFLICT (wallet_id) DO UPDATE
               SET statement_seq = EXCLUDED.statement_seq, available = EXCLUDED.available,
                   locked = EXCLUDED.locked, chain_seq = EXCLUDED.chain_seq,
                   chain_head = EXCLUDED.chain_head"""),
            {
                "w": [r.id for r in verified],
                "s": [int(r.statement_seq) for r in verified],
                "a": [int(r.available_credits) for r in verified],
                "l": [int(r.locked_credits) for r in verified],
                "c": [int(r.chain_seq) for r in verified],
                "h": [bytes(r.chain_head) if r.chain_head is not None else None for r in verified],
            },
        )
    if replace_all:
        # Rewritten whole: the next run's plans should know its size now, not after
        # autovacuum gets to it (a role that does not own it is only warned).
        await conn.execute(text("ANALYZE ledger_verify_wallets"))
