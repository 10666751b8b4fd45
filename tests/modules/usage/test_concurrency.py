"""Batches for one wallet racing over many connections: every event charged once, the
month's running total never loses an update, and a shared event id decided once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.usage import invariants
from commdesk_billing.modules.wallet.model import Wallet
from tests.modules.usage.conftest import Usage, event

MakeWallet = Callable[..., Awaitable[Wallet]]
BATCHES, OWN, SHARED = 8, 40, 10


async def test_concurrent_batches_for_one_wallet_charge_each_event_once(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(10_000)
    meter = usage.meter()
    # Tiers make the charge depend on the running total: a lost update would show.
    await usage.price(meter, [(100, 3000), (None, 1500)])
    at = datetime.now(UTC) - timedelta(minutes=1)
    shared = [event(f"shared{i}", meter, 1, wallet.id, at) for i in range(SHARED)]
    batches = [
        [*shared, *[event(f"b{b}e{i}", meter, 1, wallet.id, at) for i in range(OWN)]]
        for b in range(BATCHES)
    ]
    start = asyncio.Event()
    in_flight, peak = 0, 0

    async def send(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        nonlocal in_flight, peak
        await start.wait()
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await usage.accepted(events)
        finally:
            in_flight -= 1

    tasks = [asyncio.create_task(send(b)) for b in batches]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)
    assert peak == BATCHES
    statuses = [x["status"] for r in results for x in r]
    units = SHARED + BATCHES * OWN  # 330
    assert statuses.count("accepted") == units
    assert statuses.count("duplicate") == SHARED * (BATCHES - 1)
    # 100 units at 3, 230 at 1.5 = 645 credits, whatever order the batches took.
    expected = 645
    assert sum(x["credits"] for r in results for x in r if x["status"] == "accepted") == expected
    f = await usage.figures(wallet.id)
    assert (f.available, f.usage_lines, f.events) == (10_000 - expected, units, units)
    month = [a for a in f.aggregates if a[1] == "month"]
    assert [(a[3], a[4], a[5]) for a in month] == [(units, 645_000, expected)]
    report = await verify_ledger(usage.engine, checks=list(invariants.CHECKS))
    assert report.findings == []


async def test_one_event_id_raced_for_two_wallets_is_decided_once(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    a, b = await make_wallet(100), await make_wallet(100)
    meter = usage.meter()
    await usage.price(meter)
    at = datetime.now(UTC) - timedelta(minutes=1)
    for round_ in range(5):
        first, second = await asyncio.gather(
            usage.report([event(f"race{round_}", meter, 3, a.id, at)]),
            usage.report([event(f"race{round_}", meter, 3, b.id, at)]),
        )
        assert (first.status_code, second.status_code) == (200, 200)
        outcomes = sorted(r.json()["results"][0]["status"] for r in (first, second))
        assert outcomes == ["accepted", "conflict"]
    charged = 200 - (await usage.figures(a.id)).available - (await usage.figures(b.id)).available
    assert charged == 15
