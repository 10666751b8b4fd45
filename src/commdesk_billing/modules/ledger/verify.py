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

Incremental verification (`ledger verify`; `ledger verify --full` walks everything): a
checkpoint (`ledger_verify_checkpoint`) says up to which entry id the last clean run walked —
always the end of a seal block, so every entry up to it was committed and sealed — and
`ledger_verify_sums` holds each account's sum of legs up to it. A check that can walk only
what is new reads `report.since` (all zeros on a full run) and walks entries after
`since.through_entry_id`, starting its chains from what that run verified. The run writes the
next checkpoint only when it found nothing.

What an incremental run trusts about the walked prefix, and why that is reasonable: entries,
journals and seals are append-only (triggers refuse UPDATE, DELETE and TRUNCATE to every
role the application uses), and each entry up to the checkpoint is covered by a seal block
whose hash the checkpoint keeps (the run checks that block still carries it). Changing
checkpointed history therefore takes a superuser disabling triggers and re-writing the seals
after it; `--full` re-walks every chain and seal from the first entry and finds it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
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


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    since: Checkpoint = field(default_factory=Checkpoint)
    walk_progress: WalkProgress | None = None
    # Entries each long walk covered (kept apart from `stats`, whose keys are the report's).
    walks: dict[str, int] = field(default_factory=dict)

    def walked(self, walk: str, done: int, total: int) -> None:
        self.walks[walk] = done
        if self.walk_progress is not None:
            self.walk_progress(walk, done, total)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, check: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(check, subject, detail))


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
) -> VerifyReport:
    """Run `checks` (by default every module's, see `wiring.verify_checks`) in order,
    all in one REPEATABLE READ snapshot; `progress` is told after each check.

    `incremental`: walk only what is after the stored checkpoint. `checkpoint`: when nothing
    was found, store the next one (only meaningful with every check: a run of some checks
    must not vouch for the others)."""
    if checks is None:
        # Imported here: the composition knows every module, the ledger must not at import.
        from commdesk_billing.wiring import verify_checks

        checks = verify_checks()
    report = VerifyReport(walk_progress=walk_progress)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            if incremental:
                report.since = await read_checkpoint(conn)
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
                await write_checkpoint(conn, report.since)
    return report


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


async def write_checkpoint(conn: AsyncConnection, since: Checkpoint) -> Checkpoint:
    """Advance the checkpoint to the last seal block of this snapshot, adding the legs in
    between to the verified sums. In the run's own snapshot, so it covers exactly what the
    checks saw; a concurrent run writing it too fails with a serialization error."""
    last = (
        await conn.execute(
            text(
                "SELECT block_no, last_entry_id, seal_hash FROM ledger_seals"
                " ORDER BY block_no DESC LIMIT 1"
            )
        )
    ).first()
    if last is None or int(last.last_entry_id) <= since.through_entry_id:
        return since
    if since.full:
        await conn.execute(text("DELETE FROM ledger_verify_sums"))
    await conn.execute(
        text("""
        INSERT INTO ledger_verify_sums (account_id, balance)
        SELECT account_id, sum(amount) FROM ledger_entries
         WHERE id > :a AND id <= :b GROUP BY account_id
        ON CONFLICT (account_id) DO UPDATE
           SET balance = ledger_verify_sums.balance + EXCLUDED.balance"""),
        {"a": since.through_entry_id, "b": int(last.last_entry_id)},
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
            "t": int(last.last_entry_id),
            "b": int(last.block_no),
            "h": bytes(last.seal_hash),
            "full": since.full,
        },
    )
    return Checkpoint(int(last.last_entry_id), int(last.block_no), bytes(last.seal_hash))
