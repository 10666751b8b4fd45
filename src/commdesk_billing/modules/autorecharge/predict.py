"""The predictive trigger level: ask early enough that the member is not left at zero while
the recharge waits (DESIGN §12, cashfree.md §12.5 and §15).

    D     credits the wallet consumed in the trailing window W (debits, captures, spends)
    L     lead time = pre-debit notice (24 h) + earliest-debit rule (next day: 24 h)
          + margin (12 h), each a setting
    level = max(threshold, ceil(D * L / W))

so a wallet that burns 100 credits an hour gets a level of 6 000 with the defaults (60 h of
its burn), and one that barely spends keeps the member's threshold. Integers only: D * L is
a product of whole credits and seconds, divided once and rounded up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.autorecharge import repository as repo
from commdesk_billing.modules.wallet import service as wallet_service

log = structlog.get_logger(__name__)

BATCH = 500


@dataclass(frozen=True)
class Prediction:
    burn_credits_per_hour: int
    level: int


def lead_time_s(settings: Settings) -> int:
    return (
        settings.auto_recharge_notice_s
        + settings.auto_recharge_earliest_debit_s
        + settings.auto_recharge_margin_s
    )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def level_for(threshold: int, consumed: int, window_s: int, lead_s: int) -> Prediction:
    """The formula above (pure: tested on its own)."""
    if threshold < 0 or consumed < 0 or window_s <= 0 or lead_s < 0:
        raise ValueError("threshold, consumption and lead time are >= 0, the window > 0")
    return Prediction(
        burn_credits_per_hour=_ceil_div(consumed * 3600, window_s),
        level=max(threshold, _ceil_div(consumed * lead_s, window_s)),
    )


async def predict(
    conn: AsyncConnection, settings: Settings, wallets: list[tuple[uuid.UUID, int]]
) -> dict[uuid.UUID, Prediction]:
    """(wallet, threshold) → its prediction now."""
    window = settings.auto_recharge_burn_window_s
    since = datetime.now(UTC) - timedelta(seconds=window)
    consumed = await wallet_service.debited_since(conn, [w for w, _ in wallets], since)
    lead = lead_time_s(settings)
    return {w: level_for(t, consumed.get(w, 0), window, lead) for w, t in wallets}


async def recompute_levels(engine: AsyncEngine, settings: Settings) -> int:
    """The scheduler's job: every enabled wallet's level from its recent burn; how many
    wallets' levels changed."""

    async def work(conn: AsyncConnection) -> int:
        enabled = await repo.enabled_settings(conn, limit=BATCH)
        if not enabled:
            return 0
        found = await predict(conn, settings, [(s.wallet_id, s.threshold) for s in enabled])
        at = datetime.now(UTC)
        for s in enabled:
            p = found[s.wallet_id]
            await repo.set_prediction(conn, s.wallet_id, p.burn_credits_per_hour, p.level, at)
        changed = await wallet_service.set_auto_recharge_triggers(
            conn, [(s.wallet_id, found[s.wallet_id].level) for s in enabled]
        )
        if changed:
            log.info("auto_recharge.levels.changed", wallets=changed)
        return changed

    return int(await in_transaction(engine, work))
