"""The predictive level: max(threshold, ceil(D * L / W)) from the wallet's recent burn, so
a wallet burning fast asks early enough to ride out the pre-debit notice and the next-day
rule; one that barely spends keeps its threshold."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.autorecharge.predict import lead_time_s, level_for, recompute_levels
from commdesk_billing.modules.wallet import service as ws
from tests.modules.autorecharge.conftest import debit, decisions, enable, member, recharges

WEEK = 7 * 86400


def test_the_lead_time_is_notice_plus_next_day_plus_margin() -> None:
    assert lead_time_s(Settings()) == 24 * 3600 + 24 * 3600 + 12 * 3600


@pytest.mark.parametrize(
    ("consumed", "expected_level", "expected_burn"),
    [
        (0, 200, 0),
        (100, 200, 1),  # 36 credits of lead: the threshold wins
        (7000, 2500, 42),  # 7000 * 60 / 168 = 2500 exactly
        (7001, 2501, 42),  # rounded up, never down
        (16800, 6000, 100),  # 100 an hour: 60 hours of it
    ],
)
def test_the_formula(consumed: int, expected_level: int, expected_burn: int) -> None:
    p = level_for(200, consumed, WEEK, 60 * 3600)
    assert (p.level, p.burn_credits_per_hour) == (expected_level, expected_burn)


def test_the_formula_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="window > 0"):
        level_for(200, 10, 0, 3600)


async def test_a_wallet_burning_fast_gets_an_earlier_trigger(
    engine: AsyncEngine, settings: Settings
) -> None:
    fast = await member(engine, 10_000)
    await debit(engine, fast.wallet.id, 7000)  # 7000 in the week: 2500 of lead
    slow = await member(engine, 3100)
    await debit(engine, slow.wallet.id, 100)
    fast_out = await enable(engine, settings, fast)
    slow_out = await enable(engine, settings, slow)
    assert (fast_out.trigger_level, fast_out.burn_credits_per_hour) == (2500, 42)
    assert (slow_out.trigger_level, slow_out.burn_credits_per_hour) == (200, 1)
    # Both at 3000; the same debit takes both to 2400: only the fast one asks now.
    await debit(engine, fast.wallet.id, 600)
    await debit(engine, slow.wallet.id, 600)
    assert len(await recharges(engine, fast.wallet.id)) == 1
    assert await recharges(engine, slow.wallet.id) == []


async def test_the_job_moves_the_level_as_the_burn_changes(
    engine: AsyncEngine, settings: Settings
) -> None:
    m = await member(engine, 20_000)
    out = await enable(engine, settings, m)
    assert out.trigger_level == 200
    await debit(engine, m.wallet.id, 16_800)  # now 100 an hour over the week
    await recompute_levels(engine, settings)
    wallet = await in_transaction(engine, lambda c: ws.get_wallet(c, m.wallet.id))
    assert (wallet.auto_recharge_trigger, wallet.auto_recharge_threshold) == (6000, 200)
    # A shorter lead (no margin) asks later.
    await recompute_levels(engine, settings.model_copy(update={"auto_recharge_margin_s": 0}))
    wallet = await in_transaction(engine, lambda c: ws.get_wallet(c, m.wallet.id))
    assert wallet.auto_recharge_trigger == 4800


async def test_a_level_raised_past_the_balance_asks_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    """The job raising the level above what the wallet holds is the crossing: no debit will
    cross it from above any more, and a fast-burning wallet would drain to zero unasked."""
    m = await member(engine, 20_000)
    await enable(engine, settings, m)  # level 200
    await debit(engine, m.wallet.id, 16_800)  # 3 200 left, burning 100 an hour
    await recompute_levels(engine, settings)  # level 6 000: above the balance
    found = await recharges(engine, m.wallet.id)
    assert [r.status for r in found] == ["requested"]
    assert (await decisions(engine, m.wallet.id))[-1] == ("fired", "level_raised")
    await recompute_levels(engine, settings)  # the same level: nothing more
    assert len(await recharges(engine, m.wallet.id)) == 1
