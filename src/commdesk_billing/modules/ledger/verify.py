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


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

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
) -> VerifyReport:
    """Run `checks` (by default every module's, see `wiring.verify_checks`) in order,
    all in one REPEATABLE READ snapshot; `progress` is told after each check."""
    if checks is None:
        # Imported here: the composition knows every module, the ledger must not at import.
        from commdesk_billing.wiring import verify_checks

        checks = verify_checks()
    report = VerifyReport()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
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
    return report
