"""Usage events through the API, in-process: a batch rated and debited, replays with one
effect, conflicts, the batch bounds, tiers across a month boundary, a price change in the
middle of a month, and the many-small-equals-one-big rule."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.usage import invariants
from commdesk_billing.modules.wallet.model import Wallet
from commdesk_billing.problems import MEDIA_TYPE
from tests.modules.usage.conftest import Usage, event

MakeWallet = Callable[..., Awaitable[Wallet]]


def _month_start(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def _books_clean(usage: Usage) -> None:
    report = await verify_ledger(usage.engine, checks=list(invariants.CHECKS))
    assert report.findings == []


async def test_a_batch_is_rated_and_debited_one_line_per_event(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(1000)
    meter = usage.meter()
    await usage.price(meter, [(None, 2000)])  # 2 credits a unit
    now = datetime.now(UTC)
    events = [
        event(f"e{i}", meter, q, wallet.id, now - timedelta(minutes=i))
        for i, q in enumerate([1, 5, 10])
    ]
    r = await usage.report(events)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicate"], body["rejected"], body["conflict"]) == (3, 0, 0, 0)
    assert [x["credits"] for x in body["results"]] == [2, 10, 20]
    assert [x["debited_credits"] for x in body["results"]] == [2, 10, 20]
    assert {x["status"] for x in body["results"]} == {"accepted"}
    assert {x["price_version"] for x in body["results"]} == {1}
    f = await usage.figures(wallet.id)
    assert (f.available, f.usage_lines, f.events) == (1000 - 32, 3, 3)
    await _books_clean(usage)


async def test_the_same_batch_again_has_no_second_effect(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(500)
    meter = usage.meter()
    await usage.price(meter, [(10, 3000), (None, 1000)])
    now = datetime.now(UTC)
    events = [event(f"r{i}", meter, 4, wallet.id, now - timedelta(seconds=i)) for i in range(5)]
    first = await usage.accepted(events)
    before = await usage.figures(wallet.id)
    again = await usage.report(events)
    assert again.status_code == 200
    body = again.json()
    assert (body["accepted"], body["duplicate"]) == (0, 5)
    # A duplicate answers with what the first delivery did.
    for a, b in zip(first, body["results"], strict=True):
        assert {**a, "status": "duplicate"} == b
    assert await usage.figures(wallet.id) == before
    # 20 units: 10 at 3 credits, 10 at 1.
    assert before.available == 500 - 40
    await _books_clean(usage)


async def test_an_event_id_with_other_content_is_a_conflict_not_a_second_charge(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet, other = await make_wallet(100), await make_wallet(100)
    meter = usage.meter()
    await usage.price(meter)
    at = datetime.now(UTC) - timedelta(minutes=1)
    await usage.accepted([event("c1", meter, 3, wallet.id, at)])
    before = await usage.figures(wallet.id)
    results = await usage.accepted(
        [
            event("c1", meter, 4, wallet.id, at),  # another quantity
            event("c1", meter, 3, other.id, at),  # another wallet
            event("c2", meter, 1, wallet.id, at),  # new
            event("c2", meter, 2, wallet.id, at),  # the same new id twice, differently
            event("c2", meter, 1, wallet.id, at),  # and the same again: a duplicate of it
        ]
    )
    assert [(x["status"], x["reason"]) for x in results] == [
        ("conflict", "event_id_conflict"),
        ("conflict", "event_id_conflict"),
        ("accepted", None),
        ("conflict", "event_id_conflict"),
        ("duplicate", None),
    ]
    after = await usage.figures(wallet.id)
    assert after.available == before.available - 1
    assert (await usage.figures(other.id)).available == 100
    # Another service may use the same event id: its events are its own.
    mine = await usage.report(
        [event("c1", meter, 4, wallet.id, at)], token=usage.service(sub="svc-other-" + meter)
    )
    assert mine.json()["results"][0]["status"] == "accepted"
    await _books_clean(usage)


async def test_a_batch_of_1001_events_or_none_is_a_problem_and_changes_nothing(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(5000)
    meter = usage.meter()
    await usage.price(meter)
    at = datetime.now(UTC)
    too_many = [event(f"b{i}", meter, 1, wallet.id, at) for i in range(1001)]
    r = await usage.report(too_many)
    assert r.status_code == 422
    assert r.headers["content-type"] == MEDIA_TYPE
    assert r.json()["code"] == "validation_error"
    assert (await usage.report([])).status_code == 422
    assert (await usage.figures(wallet.id)).events == 0
    # 1000 is allowed (and fits the body limit of this route).
    ok = await usage.report(too_many[:1000])
    assert ok.status_code == 200, ok.text
    assert ok.json()["accepted"] == 1000
    assert (await usage.figures(wallet.id)).available == 4000


async def test_bad_events_are_refused_by_the_schema(usage: Usage, make_wallet: MakeWallet) -> None:
    wallet = await make_wallet(10)
    meter = usage.meter()
    at = datetime.now(UTC)
    good = event("x", meter, 1, wallet.id, at)
    for bad in (
        {**good, "quantity": 0},
        {**good, "quantity": "1"},
        {**good, "quantity": 1.0},
        {**good, "quantity": 10**9 + 1},
        {**good, "occurred_at": "2026-12-07T10:00:00"},  # no offset
        {**good, "occurred_at": "2200-01-01T00:00:00Z"},
        {**good, "user_id": "u-1"},  # both payers
        {k: v for k, v in good.items() if k != "wallet_id"},  # neither
        {**good, "meter": "Not A Meter"},
        {**good, "extra": 1},
        {**good, "event_id": "has space"},
    ):
        r = await usage.report([bad])
        assert r.status_code == 422, bad
        assert r.json()["code"] == "validation_error"


async def test_events_refused_for_their_content_are_not_recorded(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(10)
    meter, unpriced = usage.meter(), usage.meter()
    await usage.price(meter, effective_from=datetime.now(UTC) - timedelta(days=1))
    now = datetime.now(UTC)
    results = await usage.accepted(
        [
            event("f1", meter, 1, wallet.id, now + timedelta(hours=1)),
            event("f2", meter, 1, wallet.id, now - timedelta(days=36)),
            event("f3", meter, 1, uuid.uuid4(), now),
            event("f4", unpriced, 1, wallet.id, now),
            event("f5", meter, 1, wallet.id, now - timedelta(days=2)),  # before its first price
        ]
    )
    assert [(x["status"], x["reason"], x["recorded"]) for x in results] == [
        ("rejected", "occurred_in_future", False),
        ("rejected", "occurred_too_long_ago", False),
        ("rejected", "wallet_not_found", False),
        ("rejected", "no_price_in_force", False),
        ("rejected", "no_price_in_force", False),
    ]
    # Not recorded: corrected, the same id is taken.
    fixed = await usage.accepted([event("f1", meter, 1, wallet.id, now)])
    assert fixed[0]["status"] == "accepted"


async def test_tiers_are_graduated_per_calendar_month(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(1000)
    meter = usage.meter()
    await usage.price(meter, [(10, 2000), (None, 1000)])  # first 10 units at 2, then 1
    start = _month_start(datetime.now(UTC))
    last_month = start - timedelta(seconds=1)
    results = await usage.accepted(
        [
            event("t1", meter, 8, wallet.id, last_month),  # 16
            event("t2", meter, 8, wallet.id, start),  # a new month: 16 again
            event("t3", meter, 8, wallet.id, start),  # 2 x 2 + 6 x 1 = 10
            event("t4", meter, 8, wallet.id, last_month),  # 2 x 2 + 6 x 1 = 10
        ]
    )
    assert [x["credits"] for x in results] == [16, 16, 10, 10]
    months = await usage.summary(
        wallet.id, **{"from": last_month.date().isoformat(), "to": start.date().isoformat()}
    )
    assert [(p["period_start"], p["units"], p["credits"]) for p in months["periods"]] == [
        (_month_start(last_month).date().isoformat(), 16, 26),
        (start.date().isoformat(), 16, 26),
    ]
    await _books_clean(usage)


async def test_a_price_change_mid_month_rates_each_event_by_the_version_in_force(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(1000)
    meter = usage.meter()
    now = datetime.now(UTC)
    await usage.price(meter, [(None, 2000)], effective_from=now - timedelta(hours=5))
    first = await usage.accepted([event("p1", meter, 10, wallet.id, now - timedelta(hours=4))])
    # A version may not reach back under an event already rated…
    early = await usage.price(
        meter, [(None, 500)], effective_from=now - timedelta(hours=4, minutes=1), expect=409
    )
    assert early["code"] == "price_version_too_early"
    v2 = await usage.price(meter, [(None, 500)], effective_from=now - timedelta(hours=2))
    assert v2["version"] == 2
    # …nor before the latest version.
    assert (await usage.price(meter, effective_from=now - timedelta(hours=3), expect=409))[
        "code"
    ] == "price_version_too_early"
    results = await usage.accepted(
        [
            event("p2", meter, 10, wallet.id, now - timedelta(hours=1)),  # v2: 0.5 a unit
            event("p3", meter, 10, wallet.id, now - timedelta(hours=3)),  # late, v1: 2 a unit
        ]
    )
    assert [(first[0]["price_version"], first[0]["credits"])] == [(1, 20)]
    assert [(x["price_version"], x["credits"]) for x in results] == [(2, 5), (1, 20)]
    book = await usage.client.get(
        "/v1/usage/price-book",
        params={"meter": meter},
        headers={"Authorization": f"Bearer {usage.finance()}"},
    )
    assert [v["version"] for v in book.json()["versions"]] == [1, 2]
    await _books_clean(usage)


async def test_many_small_events_cost_what_one_big_one_does(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    small, big = await make_wallet(5000), await make_wallet(5000)
    meter = usage.meter()
    # 0.333 credits a unit for 100 units, then 1.5: fractional credits on both tiers.
    await usage.price(meter, [(100, 333), (None, 1500)])
    at = datetime.now(UTC) - timedelta(minutes=1)
    many = await usage.accepted([event(f"s{i}", meter, 1, small.id, at) for i in range(1000)])
    one = await usage.accepted([event("big", meter, 1000, big.id, at)])
    # 100 x 0.333 + 900 x 1.5 = 1383.3 → 1383
    assert sum(x["credits"] for x in many) == one[0]["credits"] == 1383
    assert (await usage.figures(small.id)).available == (await usage.figures(big.id)).available
    await _books_clean(usage)


async def test_an_event_may_name_the_user_instead_of_the_wallet(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    sub = f"user-{uuid.uuid4().hex}"
    wallet = await make_wallet(50, sub=sub)
    meter = usage.meter()
    await usage.price(meter)
    at = datetime.now(UTC)
    e = {k: v for k, v in event("u1", meter, 7, wallet.id, at).items() if k != "wallet_id"}
    results = await usage.accepted([{**e, "user_id": sub}])
    assert (results[0]["status"], results[0]["wallet_id"]) == ("accepted", str(wallet.id))
    # The same event by wallet id is the same event.
    again = await usage.accepted([event("u1", meter, 7, wallet.id, at)])
    assert again[0]["status"] == "duplicate"
    assert (await usage.figures(wallet.id)).available == 43


async def test_the_usage_route_alone_takes_a_larger_body(usage: Usage) -> None:
    # 512 KiB here (1 000 events fit, as above); a body beyond it is refused before parsing.
    at = datetime.now(UTC)
    huge = [event(f"h{i:05d}", "m.x", 1, uuid.uuid4(), at) for i in range(4000)]
    r = await usage.report(huge)
    assert (r.status_code, r.json()["code"]) == (413, "payload_too_large")
    assert "524288 bytes" in r.json()["detail"]
