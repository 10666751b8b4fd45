"""Notification keys: the same event delivered or announced again is one notification, and
two different events of one type are two (neither is lost to the other's key)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.modules.notifications.conftest import consume, deliveries, event, make_user
from tests.modules.notifications.samples import full


async def test_cancelling_at_period_end_then_now_tells_the_member_both_times(
    engine: AsyncEngine,
) -> None:
    # The member asks to cancel at the period's end ("stays active until 1 Jan"), then
    # cancels now (`subscriptions.service.cancel` allows both, each announced): the
    # second notice says it has ended and must not be dropped as a repeat of the first.
    user = await make_user(engine, f"s-{uuid.uuid4().hex[:8]}@example.test")
    sub = str(uuid.uuid4())
    later = {**full(str(user))["subscription.cancelled"], "subscription_id": sub}
    now = {**later, "ends_at": "2026-12-10T09:15:00+00:00"}
    first = event("subscription.cancelled", later)
    k1 = await consume(engine, first)
    k2 = await consume(engine, event("subscription.cancelled", now))
    assert k1 != k2
    assert await consume(engine, first) == k1  # a redelivery is still one notification
    assert await consume(engine, event("subscription.cancelled", now)) == k2  # re-announced
    for key in (k1, k2):
        assert set(await deliveries(engine, key)) == {"email", "webhook"}


async def test_a_mandate_that_comes_back_is_told_each_time(engine: AsyncEngine) -> None:
    # ACTIVE, paused by the payer (ON_HOLD), ACTIVE again: three changes, three notices;
    # a redelivered message is still one.
    user = await make_user(engine, f"m-{uuid.uuid4().hex[:8]}@example.test")
    mandate = uuid.uuid4().hex
    base = {**full(str(user))["mandate.status_changed"], "mandate_id": mandate}
    changes = [
        event("mandate.status_changed", {**base, "status": s})
        for s in ("ACTIVE", "ON_HOLD", "ACTIVE")
    ]
    keys = [await consume(engine, e) for e in changes]
    assert len(set(keys)) == 3
    assert await consume(engine, changes[2]) == keys[2]
    for key in keys:
        assert set(await deliveries(engine, key)) == {"email", "webhook"}


async def test_a_low_balance_redelivered_is_one_notice_and_announced_again_is_two(
    engine: AsyncEngine,
) -> None:
    # Keyed by the message id, which a redelivery, the retry ladder (`next_attempt`) and a
    # dead-letter replay keep; a new crossing is a new message.
    user = await make_user(engine, f"l-{uuid.uuid4().hex[:8]}@example.test")
    payload = {**full(str(user))["wallet.low_balance"], "wallet_id": uuid.uuid4().hex}
    first = event("wallet.low_balance", payload)
    key = await consume(engine, first)
    assert await consume(engine, first.next_attempt()) == key
    assert await consume(engine, first.model_copy(update={"attempt": 1})) == key
    again = await consume(engine, event("wallet.low_balance", payload))
    assert again != key
    assert set(await deliveries(engine, again)) == {"email", "webhook"}
