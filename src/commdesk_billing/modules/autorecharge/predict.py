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
from commdesk_billing.modules.autorecharge import trigger
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
    wallets' levels changed.

    A wallet below its level that no debit will cross again is asked for here, once:
    when the new level rose past its balance (`level_raised`), or when its last recharge
    succeeded without lifting it back to its level and the cooldown is over
    (`still_below_level`). Without this a fast-burning wallet whose level was raised, or
    whose pack is smaller than its level, would drain to zero unasked.

    Locks: a wallet whose level changes or that may be asked for is handled in a
    transaction of its own, its row locked first (then its settings and its recharge, the
    order of every other path); the rest take no wallet lock at all."""
    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=settings.auto_recharge_cooldown_s)

    async def survey(conn: AsyncConnection) -> list[tuple[uuid.UUID, Prediction, bool]]:
        enabled = await repo.enabled_settings(conn, limit=BATCH)
        if not enabled:
            return []
        found = await predict(conn, settings, [(s.wallet_id, s.threshold) for s in enabled])
        rearm = await repo.last_succeeded_before(conn, [s.wallet_id for s in enabled], cutoff)
        busy = [
            (s.wallet_id, found[s.wallet_id], s.wallet_id in rearm)
            for s in enabled
            if s.wallet_id in rearm or s.predicted_level != found[s.wallet_id].level
        ]
        handled = {w for w, _, _ in busy}
        for s in enabled:
            if s.wallet_id not in handled:
                p = found[s.wallet_id]
                await repo.set_prediction(conn, s.wallet_id, p.burn_credits_per_hour, p.level, now)
        return busy

    async def one(conn: AsyncConnection, wallet_id: uuid.UUID, p: Prediction, rearm: bool) -> int:
        before = await wallet_service.get_wallet(conn, wallet_id, lock=True)
        old = before.auto_recharge_trigger
        if old is None:  # turned off since the survey
            return 0
        changed = await wallet_service.set_auto_recharge_triggers(conn, [(wallet_id, p.level)])
        await repo.set_prediction(conn, wallet_id, p.burn_credits_per_hour, p.level, now)
        wallet = await wallet_service.get_wallet(conn, wallet_id)
        level, available = wallet.auto_recharge_trigger, wallet.available_credits
        if level is None or available >= level:
            return changed
        if old <= available:
            await trigger.request(conn, wallet, available, cause="level_raised")
        elif rearm and wallet_id in await repo.last_succeeded_before(conn, [wallet_id], cutoff):
            # Asked again under the wallet's lock: a crossing since the survey wrote its own.
            await trigger.request(conn, wallet, available, cause="still_below_level")
        return changed

    busy = await in_transaction(engine, survey)
    changed = 0
    for wallet_id, p, rearm in busy:

        async def work(
            conn: AsyncConnection, w: uuid.UUID = wallet_id, p: Prediction = p, r: bool = rearm
        ) -> int:
            return await one(conn, w, p, r)

        changed += int(await in_transaction(engine, work))
    if changed:
        log.info("auto_recharge.levels.changed", wallets=changed)
    return changed
