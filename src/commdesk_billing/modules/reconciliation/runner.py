"""A reconciliation run: each source asked in turn (internal, gateway, payouts), what it saw
recorded as findings, its metrics set. One source failing (Cashfree away) does not stop the
others; it records nothing and says why in its summary."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.errors import CashfreeError
from commdesk_billing.gateway.factory import cashfree_client, payouts_client
from commdesk_billing.modules.ledger.verify import Check
from commdesk_billing.modules.reconciliation import gateway, internal, payouts, service
from commdesk_billing.modules.reconciliation.matching import Window
from commdesk_billing.modules.reconciliation.model import (
    Observed,
    Recorded,
    RunSummary,
    Source,
    SourceResult,
    SourceSummary,
)
from commdesk_billing.telemetry.metrics import (
    RECONCILIATION_LAST_SUCCESS,
    RECONCILIATION_RUNS,
)

log = structlog.get_logger(__name__)


def window_of(settings: Settings, now: datetime | None = None) -> Window:
    at = now or datetime.now(UTC)
    return Window(
        now=at,
        since=at - timedelta(days=settings.reconciliation_lookback_days),
        grace=timedelta(seconds=settings.reconciliation_grace_s),
        settle_after=timedelta(days=settings.reconciliation_settle_days),
    )


async def _gateway(engine: AsyncEngine, settings: Settings, window: Window) -> SourceResult:
    async with cashfree_client(settings) as client:
        return await gateway.reconcile(engine, client, window)


async def _payouts(engine: AsyncEngine, settings: Settings, window: Window) -> SourceResult:
    if not settings.cashfree_payout_client_id or settings.cashfree_payout_client_secret is None:
        # No Payouts app configured: nothing was ever paid out through it.
        return SourceResult(Source.payouts)
    async with payouts_client(settings) as client:
        return await payouts.reconcile(engine, client, window)


async def _record(conn: AsyncConnection, *, seen: list[Observed], at: datetime) -> Recorded:
    return await service.record(conn, seen, at)


async def run(
    engine: AsyncEngine,
    settings: Settings,
    *,
    checks: Sequence[Check],
    sources: Sequence[Source] = tuple(Source),
    now: datetime | None = None,
) -> RunSummary:
    """Reconcile `sources`; `checks`: the internal source's (`wiring.verify_checks()`)."""
    window = window_of(settings, now)
    runners: dict[Source, Callable[[], Awaitable[SourceResult]]] = {
        Source.internal: lambda: internal.reconcile(engine, checks),
        Source.gateway: lambda: _gateway(engine, settings, window),
        Source.payouts: lambda: _payouts(engine, settings, window),
    }
    summaries = []
    for source in sources:
        started = time.monotonic()
        try:
            result = await runners[source]()
        except (CashfreeError, OSError) as exc:
            RECONCILIATION_RUNS.labels(source.value, "failed").inc()
            log.warning("reconciliation.source_failed", source=source.value, error=str(exc)[:300])
            summaries.append(
                SourceSummary(source, 0, 0, 0, 0, 0, 0, 0, error=f"{type(exc).__name__}: {exc}")
            )
            continue
        recorded = await in_transaction(
            engine, partial(_record, seen=result.observed, at=window.now)
        )
        outcome = "findings" if result.observed else "clean"
        RECONCILIATION_RUNS.labels(source.value, outcome).inc()
        RECONCILIATION_LAST_SUCCESS.labels(source.value).set(time.time())
        log.info(
            "reconciliation.source_done",
            source=source.value,
            checked=result.checked,
            matched=result.matched,
            mismatches=len(result.observed),
            opened=recorded.opened,
            seconds=round(time.monotonic() - started, 3),
        )
        summaries.append(
            SourceSummary(
                source,
                result.checked,
                result.matched,
                result.explained_differences,
                len(result.observed),
                recorded.opened,
                recorded.seen_again,
                recorded.reopened,
                None,
            )
        )
    open_total = await in_transaction(engine, service.refresh_open_gauge)
    return RunSummary(summaries, open_total)
