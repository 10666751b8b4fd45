"""Review findings: a plan change while the period's renewal is under way, and credits that
arrive in the grace after the last dunning retry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import PlanChangeRefused
from commdesk_billing.modules.notifications.catalog import CATALOG
from commdesk_billing.modules.subscriptions import renewal
from commdesk_billing.modules.subscriptions import service as subs
from commdesk_billing.modules.subscriptions.jobs import renew_subscriptions
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.security.jwt import Principal, Role
from tests.modules.subscriptions.helpers import (
    Member,
    charges,
    events,
    get,
    grant,
    make_plan,
    member,
    periods,
    subscribe,
    ts,
    wallet,
)

S = timedelta(seconds=1)
DAY = timedelta(days=1)


def _me(who: Member) -> Principal:
    return Principal(sub=who.sub, role=Role.member, scopes=frozenset())


@pytest.mark.parametrize(("dearer", "skew"), [(True, 0), (False, 0), (True, 2)])
async def test_a_plan_change_once_the_period_has_ended_is_refused(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine, dearer: bool, skew: int
) -> None:
    """The period ended and its renewal's first step ran (a crash before the charge): the
    next period is priced already. A change now would be silently undone by the charge
    (an upgrade reverted for free, a downgrade lost and the old price charged)."""
    basic = await make_plan(client, settings, price_credits=300, interval_unit="day")
    other = await make_plan(
        client, settings, price_credits=900 if dearer else 100, interval_unit="day"
    )
    who = await member(engine, 5000)
    out = await subscribe(client, settings, who, basic["code"])
    sid = uuid.UUID(out["id"])
    at = ts(out["current_period_end"]) + S
    assert await in_transaction(engine, partial(renewal.make_period, sid=sid, at=at)) is None

    with pytest.raises(PlanChangeRefused):
        await in_transaction(
            engine,
            lambda c: subs.change_plan(
                # `skew`: the API's clock behind the scheduler's, still in the period.
                c,
                _me(who),
                sid,
                plan_code=other["code"],
                operation_key="k1",
                at=at - skew * S,
            ),
        )
    report = await renew_subscriptions(engine, only=[sid], at=at)
    assert report.outcomes[str(sid)] == ["renewed"]
    sub = await get(engine, sid)
    assert (sub.plan_code, sub.next_plan_code) == (basic["code"], None)
    assert await charges(engine, sid) == [(1, "period", 300), (2, "period", 300)]
    # In the renewed period the change is taken as usual.
    ok = await client.post(
        f"/v1/subscriptions/{sid}/change",
        json={"plan_code": other["code"]},
        headers=who.headers(settings),
    )
    assert ok.status_code == 200, ok.text


async def test_credits_arriving_after_the_last_retry_are_taken_at_the_grace_end(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    """The member was told the plan stays active until the grace's end: credits they add
    after the last dunning retry must still renew it then, not let it expire."""
    plan = await make_plan(
        client,
        settings,
        name="Solo",
        price_credits=100,
        interval_unit="week",
        grace_period_seconds=3 * 86400,
        dunning_offsets_seconds=[86400],
    )
    who = await member(engine, 100)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    start2 = ts(out["current_period_end"])
    grace = start2 + 3 * DAY

    assert (await renew_subscriptions(engine, only=[sid], at=start2)).outcomes[str(sid)] == [
        "failed"
    ]
    assert (await renew_subscriptions(engine, only=[sid], at=start2 + DAY)).outcomes[str(sid)] == [
        "failed"
    ]
    said = await events(engine, sid)
    # The last failure names the one attempt left: at the grace's end.
    assert said[-1][1]["next_retry_at"] == grace.isoformat()
    await grant(engine, who.wallet.id, 100)
    report = await renew_subscriptions(engine, only=[sid], at=grace)
    assert report.outcomes[str(sid)] == ["renewed"]
    sub = await get(engine, sid)
    assert (sub.status.value, sub.current_period) == ("active", 2)
    assert await charges(engine, sid) == [(1, "period", 100), (2, "period", 100)]
    assert (await wallet(engine, who.wallet.id)).available_credits == 0


async def test_a_late_scheduler_does_not_replay_the_missed_retries(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    """A scheduler down through the grace: the first run past it makes one attempt and
    expires the subscription, rather than one failure (and one email) per missed retry
    over the next runs while the member keeps a service the grace no longer covers."""
    plan = await make_plan(
        client,
        settings,
        price_credits=100,
        interval_unit="week",
        grace_period_seconds=3 * 86400,
        dunning_offsets_seconds=[3600, 86400, 2 * 86400],
    )
    who = await member(engine, 100)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    start2 = ts(out["current_period_end"])
    report = await renew_subscriptions(engine, only=[sid], at=start2 + 5 * DAY)
    assert report.outcomes[str(sid)] == ["ended"]
    sub = await get(engine, sid)
    assert (sub.status.value, sub.ended_at) == ("expired", start2 + 3 * DAY)
    assert [(p.status.value, p.attempts) for p in await periods(engine, sid)] == [
        ("paid", 1),
        ("unpaid", 1),
    ]
    assert [t for t, _ in await events(engine, sid)] == ["subscription.cancelled"]


async def test_a_downgrade_target_subscribed_to_separately_does_not_wedge_the_renewal(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    """A downgrade to B waits for the renewal; the renewal's period is priced on B, then (in
    the crash window, or during its dunning) the member subscribes to B directly. Charging
    the period would move this subscription onto B too — a second live B, refused by the
    unique index on every run, so it was neither charged nor ever expired. It ends instead:
    the member has B on its own, and nothing is charged twice."""
    pro = await make_plan(client, settings, price_credits=300, interval_unit="day")
    basic = await make_plan(client, settings, price_credits=100, interval_unit="day")
    who = await member(engine, 1000)
    out = await subscribe(client, settings, who, pro["code"])
    sid = uuid.UUID(out["id"])
    r = await client.post(
        f"/v1/subscriptions/{sid}/change",
        json={"plan_code": basic["code"]},
        headers=who.headers(settings),
    )
    assert r.status_code == 200, r.text
    at = ts(out["current_period_end"]) + S
    assert await in_transaction(engine, partial(renewal.make_period, sid=sid, at=at)) is None
    assert [p.plan_code for p in await periods(engine, sid)] == [pro["code"], basic["code"]]
    own = await subscribe(client, settings, who, basic["code"])

    report = await renew_subscriptions(engine, only=[sid], at=at)
    assert report.outcomes[str(sid)] == ["ended"]
    sub = await get(engine, sid)
    assert (sub.status.value, sub.ended_at, sub.plan_code) == (
        "cancelled",
        ts(out["current_period_end"]),
        pro["code"],
    )
    assert [p.status.value for p in await periods(engine, sid)] == ["paid", "void"]
    assert await charges(engine, sid) == [(1, "period", 300)]
    assert await charges(engine, uuid.UUID(own["id"])) == [(1, "period", 100)]
    assert (await wallet(engine, who.wallet.id)).available_credits == 600
    assert [t for t, _ in await events(engine, sid)] == ["subscription.cancelled"]


async def test_every_subscription_event_is_one_the_notifications_catalog_reads(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    """The payloads a real run announces (renewed, failed with a retry, cancelled) parse
    with the catalog's models, name the billing user the notifications look up, and fill
    their templates."""
    plan = await make_plan(
        client,
        settings,
        name="Team",
        price_credits=100,
        interval_unit="day",
        grace_period_seconds=86400,
        dunning_offsets_seconds=[3600],
    )
    who = await member(engine, 200)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    start2 = ts(out["current_period_end"])
    assert (await renew_subscriptions(engine, only=[sid], at=start2)).renewed == 1
    start3 = start2 + DAY
    assert (await renew_subscriptions(engine, only=[sid], at=start3)).failed == 1
    r = await client.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": False},
        headers=who.headers(settings),
    )
    assert r.status_code == 200, r.text
    said = await events(engine, sid)
    assert [t for t, _ in said] == [
        "subscription.renewed",
        "subscription.renewal_failed",
        "subscription.cancelled",
    ]
    for kind, data in said:
        spec = CATALOG[kind]
        payload = spec.payload.model_validate(data)
        assert payload.user_id == who.wallet.owner_id
        assert all(v for v in spec.view(payload).values() if v != ""), (kind, data)


async def test_cancelling_now_after_at_period_end_is_its_own_notification(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    """Cancel at period end ("stays active until <end>"), then cancel now: the second
    announcement tells the member the plan has ended today. The catalog keyed every
    cancellation of a subscription alike, so the second was taken for a repeat and dropped."""
    plan = await make_plan(client, settings, price_credits=100)
    who = await member(engine, 1000)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    for at_end in (True, False):
        r = await client.post(
            f"/v1/subscriptions/{sid}/cancel",
            json={"at_period_end": at_end},
            headers=who.headers(settings),
        )
        assert r.status_code == 200, r.text
    said = await events(engine, sid)
    assert [t for t, _ in said] == ["subscription.cancelled"] * 2
    spec = CATALOG["subscription.cancelled"]
    keys = set()
    for kind, data in said:
        envelope = Envelope(id=uuid.uuid4(), type=kind, occurred_at=datetime.now(UTC), payload=data)
        keys.add(spec.identity(spec.payload.model_validate(data), envelope))
        # A redelivery of one message is still the same notification.
        again = envelope.model_copy(update={"attempt": 2})
        assert spec.identity(spec.payload.model_validate(data), again) in keys
    assert len(keys) == 2
