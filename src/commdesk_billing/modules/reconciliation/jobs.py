"""The scheduler's `reconcile` job. A run walks the whole ledger and asks Cashfree about
every payment, refund and transfer of the window: minutes on a large book. The scheduler
runs its jobs one after another, so the run is started as a task of its own and the job
returns at once (hold expiry and sealing keep their cadence); a run still going when the
job comes round again is left to finish, not doubled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from commdesk_billing.modules.reconciliation.model import RunSummary

log = structlog.get_logger(__name__)


class InBackground:
    def __init__(self, work: Callable[[], Awaitable[RunSummary]]) -> None:
        self._work = work
        self.task: asyncio.Task[RunSummary] | None = None

    async def __call__(self) -> str:
        if self.task is not None and not self.task.done():
            return "still running"
        self.task = asyncio.create_task(self._run())
        return "started"

    async def _run(self) -> RunSummary:
        try:
            summary = await self._work()
        except Exception as exc:  # logged here: nobody awaits a scheduled run
            log.error("reconciliation.run_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            raise
        log.info(
            "reconciliation.run_done",
            open_findings=summary.open_findings,
            failed=[s.source.value for s in summary.sources if s.error],
        )
        return summary
