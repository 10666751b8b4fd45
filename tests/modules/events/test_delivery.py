"""Deliveries end to end in-process: the consumer's records, then the delivery job POSTing
to real HTTP receivers on loopback that verify each request exactly as docs/api.md tells a
CommDesk service to (the job's clock moved, never slept, to make retries due)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Environment, Settings
from commdesk_billing.modules.events import sealing, sender
from commdesk_billing.modules.events.jobs import backoff, deliver_due
from commdesk_billing.modules.events.model import Delivery, DeliveryStatus, Event, Outgoing
from commdesk_billing.queues.envelope import decode
from tests.harness.mongo import MongoTarget, communities
from tests.modules.events.conftest import (
    Endpoints,
    Receiver,
    consume,
    credited,
    docs_verifier,
    member,
    refunded,
)


def _counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("billing_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


async def _deliveries(client: httpx.AsyncClient, e: Endpoints, endpoint_id: str) -> Any:
    r = await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=e.headers())
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_a_delivery_is_signed_and_verifies_as_a_receiver_would(
    engine: AsyncEngine,
    wsettings: Settings,
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    receiver = make_receiver()
    endpoint = await endpoints.create(receiver)
    user_id, sub = await member(engine)
    envelope = credited(user_id)
    await consume(engine, wsettings, envelope)

    done = await deliver_due(engine, wsettings)
    assert (done.claimed, done.succeeded, done.retrying, done.failed) == (1, 1, 0, 0)

    (got,) = receiver.received
    assert got.verified  # the docs' snippet, run by the receiver on the raw bytes it read
    event = json.loads(got.body)
    assert event["type"] == "payment.credited"
    assert got.headers["CommDesk-Event-Id"] == event["id"]
    assert got.headers["CommDesk-Event-Type"] == "payment.credited"
    # The public payload: CommDesk's user id, never billing's row id or internal fields.
    assert event["data"] == {
        "payment_id": envelope.payload["payment_id"],
        "order_id": envelope.payload["order_id"],
        "user": sub,
        "wallet_id": envelope.payload["wallet_id"],
        "amount_paise": 35400,
        "taxable_paise": 30000,
        "gst_amount_paise": 5400,
        "credits": 3200,
        "pack_code": "pack_300",
        "kind": "pack",
    }
    # The signature is the documented HMAC, recomputed here by hand as well.
    header = got.headers["CommDesk-Signature"]
    t = header.split(",")[0].removeprefix("t=")
    mac = hmac.new(endpoint["secret"].encode(), t.encode() + b"." + got.body, hashlib.sha256)
    assert header == f"t={t},v1={mac.hexdigest()}"
    assert abs(int(t) - time.time()) < 60

    # The delivery log says what happened; the pull API serves the same event.
    (d,) = await _deliveries(client, endpoints, endpoint["id"])
    assert (d["status"], d["attempts"], d["last_status_code"], d["event_id"]) == (
        "succeeded",
        1,
        200,
        event["id"],
    )
    (a,) = d["attempt_log"]
    assert (a["attempt"], a["status_code"], a["error"]) == (1, 200, None)
    assert 0 <= a["duration_ms"] < 2000
    r = await client.get(f"/v1/events/{event['id']}", headers=endpoints.headers())
    assert r.status_code == 200
    pulled = r.json()
    assert {k: pulled[k] for k in ("id", "type", "data")} == {
        k: event[k] for k in ("id", "type", "data")
    }


def test_the_documented_check_refuses_a_wrong_secret_and_an_old_timestamp() -> None:
    verify = docs_verifier()
    secret, body = "whsec_right", b'{"id":"e1","type":"payment.paid"}'
    now = int(time.time())

    def header(key: str, t: int, payload: bytes = body) -> str:
        mac = hmac.new(key.encode(), str(t).encode() + b"." + payload, hashlib.sha256)
        return f"t={t},v1={mac.hexdigest()}"

    assert verify(secret, header(secret, now), body)
    assert not verify("whsec_wrong", header(secret, now), body)
    assert not verify(secret, header("whsec_wrong", now), body)
    assert not verify(secret, header(secret, now), body + b" ")  # the body changed
    # Within the 5 minutes either way, and not past them (a captured request replayed).
    assert verify(secret, header(secret, now - 299), body, now=now)
    assert not verify(secret, header(secret, now - 301), body, now=now)
    assert not verify(secret, header(secret, now + 301), body, now=now)
    assert not verify(secret, "v1=abc", body)
    assert not verify(secret, "t=notanumber,v1=abc", body)


async def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(
    engine: AsyncEngine,
    wsettings: Settings,
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    receiver = make_receiver()
    receiver.answers = [500]
    endpoint = await endpoints.create(receiver)
    user_id, _ = await member(engine)
    await consume(engine, wsettings, refunded(user_id))
    before = {o: _counted(o) for o in ("retrying", "succeeded")}

    now = datetime.now(UTC)
    first = await deliver_due(engine, wsettings, now=now)
    assert (first.claimed, first.retrying) == (1, 1)
    (d,) = await _deliveries(client, endpoints, endpoint["id"])
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("pending", 1, 500)
    assert d["last_error"] == "answered 500"
    wait = datetime.fromisoformat(d["next_attempt_at"]) - now
    assert timedelta(seconds=30) <= wait <= timedelta(seconds=37.5)  # 30 s + up to 25 %

    # Not due yet: nothing is sent.
    assert (await deliver_due(engine, wsettings, now=now + timedelta(seconds=29))).claimed == 0
    second = await deliver_due(engine, wsettings, now=now + timedelta(minutes=1))
    assert (second.claimed, second.succeeded) == (1, 1)

    assert [r.verified for r in receiver.received] == [True, True]
    ids = {r.headers["CommDesk-Event-Id"] for r in receiver.received}
    assert len(ids) == 1 and len(receiver.handled) == 1
    (d,) = await _deliveries(client, endpoints, endpoint["id"])
    assert (d["status"], d["attempts"]) == ("succeeded", 2)
    assert [(a["attempt"], a["status_code"]) for a in d["attempt_log"]] == [(1, 500), (2, 200)]
    assert {o: _counted(o) - n for o, n in before.items()} == {"retrying": 1, "succeeded": 1}


def test_backoff_doubles_with_jitter_and_is_capped(wsettings: Settings) -> None:
    assert backoff(wsettings, 1, jitter=0.0) == timedelta(seconds=30)
    assert backoff(wsettings, 1, jitter=1.0) == timedelta(seconds=37.5)
    assert backoff(wsettings, 4, jitter=0.0) == timedelta(seconds=240)
    assert backoff(wsettings, 40, jitter=0.0) == timedelta(seconds=3600)  # the cap


async def test_a_delivery_fails_after_its_window_and_the_endpoint_is_disabled(
    engine: AsyncEngine,
    wsettings: Settings,
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    receiver = make_receiver()
    receiver.answers = [503] * 10
    endpoint = await endpoints.create(receiver)
    user_id, _ = await member(engine)
    await consume(engine, wsettings, refunded(user_id))
    now = datetime.now(UTC)
    assert (await deliver_due(engine, wsettings, now=now)).retrying == 1

    # Three days and more later, still 503: failed for good, and the endpoint (failing
    # for over BILLING_WEBHOOK_DISABLE_AFTER_S, a day here) disabled.
    later = await deliver_due(engine, wsettings, now=now + timedelta(days=3, minutes=1))
    assert (later.claimed, later.failed) == (1, 1)
    (d,) = await _deliveries(client, endpoints, endpoint["id"])
    assert (d["status"], d["attempts"], d["next_attempt_at"]) == ("failed", 2, None)
    r = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=endpoints.headers())
    assert r.json()["enabled"] is False
    assert r.json()["disabled_reason"].startswith("every delivery failed since ")


async def test_endpoints_get_only_the_event_types_they_asked_for(
    engine: AsyncEngine,
    wsettings: Settings,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    refunds_only, everything = make_receiver(), make_receiver()
    await endpoints.create(refunds_only, ["refund.succeeded"])
    await endpoints.create(everything)
    user_id, _ = await member(engine)
    await consume(engine, wsettings, credited(user_id))
    await consume(engine, wsettings, refunded(user_id))

    done = await deliver_due(engine, wsettings)
    assert (done.claimed, done.succeeded) == (3, 3)
    assert [b["type"] for b in refunds_only.bodies()] == ["refund.succeeded"]
    assert sorted(b["type"] for b in everything.bodies()) == [
        "payment.credited",
        "refund.succeeded",
    ]


async def test_a_message_consumed_twice_makes_one_event_and_one_delivery(
    engine: AsyncEngine,
    wsettings: Settings,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    receiver = make_receiver()
    await endpoints.create(receiver)
    user_id, _ = await member(engine)
    envelope = credited(user_id)
    await consume(engine, wsettings, envelope)
    await consume(engine, wsettings, envelope)  # the broker redelivered it
    assert (await deliver_due(engine, wsettings)).claimed == 1
    async with engine.connect() as conn:
        n = await conn.scalar(
            text("SELECT count(*) FROM webhook_events WHERE data ->> 'payment_id' = :p"),
            {"p": envelope.payload["payment_id"]},
        )
    assert n == 1


async def test_a_receiver_that_hangs_holds_up_nobody_else(
    engine: AsyncEngine,
    wsettings: Settings,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    stuck, healthy = make_receiver(), make_receiver()
    stuck.delay_s = 6.0
    await endpoints.create(stuck)
    await endpoints.create(healthy)
    user_id, _ = await member(engine)
    for _ in range(3):
        await consume(engine, wsettings, refunded(user_id))
    fast = wsettings.model_copy(update={"webhook_timeout_s": 1.0})

    started = time.monotonic()
    done = await deliver_due(engine, fast)
    took = time.monotonic() - started
    # Every POST of the round runs at once, each cut at its 1 s deadline.
    assert took < 4.5, took
    assert (done.claimed, done.succeeded, done.retrying) == (6, 3, 3)
    assert len(healthy.handled) == 3
    async with engine.connect() as conn:
        errors = (
            (
                await conn.execute(
                    text("""SELECT DISTINCT d.last_error FROM webhook_deliveries d
                         JOIN webhook_endpoints e ON e.id = d.endpoint_id
                        WHERE e.url = :u"""),
                    {"u": stuck.url},
                )
            )
            .scalars()
            .all()
        )
    assert errors == ["no answer within 1 s"]


async def test_an_endpoint_that_fails_costs_one_batch_per_round(
    engine: AsyncEngine,
    wsettings: Settings,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    """A down receiver with a backlog is tried once per round (one batch's timeouts), while
    a healthy one's backlog goes on in the round's later batches."""
    stuck, healthy = make_receiver(), make_receiver()
    stuck.delay_s = 6.0
    await endpoints.create(stuck)
    await endpoints.create(healthy)
    user_id, _ = await member(engine)
    for _ in range(6):
        await consume(engine, wsettings, refunded(user_id))
    small = wsettings.model_copy(
        update={
            "webhook_timeout_s": 1.0,
            "webhook_sends_at_once": 4,
            "webhook_sends_per_endpoint": 2,
        }
    )
    started = time.monotonic()
    done = await deliver_due(engine, small)
    took = time.monotonic() - started
    # Batch 1: two of each (the stuck ones cut at 1 s); then the healthy endpoint alone.
    assert (done.claimed, done.succeeded, done.retrying) == (8, 6, 2)
    assert (len(stuck.received), len(healthy.handled)) == (2, 6)
    assert took < 3.5, took


async def test_a_round_stops_claiming_when_its_budget_is_spent(
    engine: AsyncEngine,
    wsettings: Settings,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    receiver = make_receiver()
    await endpoints.create(receiver)
    user_id, _ = await member(engine)
    for _ in range(3):
        await consume(engine, wsettings, refunded(user_id))
    one_at_a_time = wsettings.model_copy(
        update={"webhook_sends_at_once": 1, "webhook_sends_per_endpoint": 1}
    )
    # A spent budget: the round ends before its first claim; the next round sends all.
    assert (await deliver_due(engine, one_at_a_time, budget_s=0)).claimed == 0
    assert (await deliver_due(engine, one_at_a_time)).claimed == 3


async def test_a_backlog_of_one_endpoint_takes_only_its_share_of_a_round(
    engine: AsyncEngine,
    wsettings: Settings,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    busy, quiet = make_receiver(), make_receiver()
    await endpoints.create(busy)
    user_id, _ = await member(engine)
    for _ in range(10):
        await consume(engine, wsettings, refunded(user_id))
    await endpoints.create(quiet)  # registered after the backlog: gets only the next one
    await consume(engine, wsettings, refunded(user_id))
    one_batch = wsettings.model_copy(
        update={"webhook_sends_at_once": 5, "webhook_sends_per_endpoint": 2}
    )
    done = await deliver_due(engine, one_batch, limit=3)
    # Three sends: two of the busy endpoint's eleven (the oldest), and the quiet endpoint's
    # one, though it is newer than all the busy endpoint's others.
    assert done.claimed == 3
    assert (len(busy.received), len(quiet.received)) == (2, 1)


async def test_a_real_spend_is_announced_and_becomes_spend_created(
    engine: AsyncEngine,
    wsettings: Settings,
    client: httpx.AsyncClient,
    token: Callable[..., str],
    mongodb: MongoTarget,
    make_wallet: Callable[..., Any],
) -> None:
    from commdesk_billing.security.jwt import Role
    from tests.conftest import auth

    cid = f"c-{uuid.uuid4().hex[:12]}"
    async with communities(mongodb) as collection:
        await collection.insert_one(
            {"_id": cid, "name": "Chess Club", "owner_ids": ["owner-x"], "status": "active"}
        )
    sub = f"spender-{uuid.uuid4().hex[:8]}"
    await make_wallet(100, sub=sub)
    r = await client.post(
        f"/v1/communities/{cid}/spends",
        json={"credits": 10, "reason": "ticket", "reference": "t-1"},
        headers=auth(token(Role.member, sub=sub), uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    spend = r.json()
    async with engine.connect() as conn:
        (body,) = (
            (
                await conn.execute(
                    text("""SELECT body FROM outbox WHERE queue = 'webhooks.outbound'
                         AND message_type = 'community.spent' AND body LIKE :s"""),
                    {"s": f"%{spend['id']}%"},
                )
            )
            .scalars()
            .all()
        )
    await consume(engine, wsettings, decode(body.encode()))
    r = await client.get(
        "/v1/events",
        params={"type": "spend.created", "limit": 5},
        headers=auth(token(Role.finance_admin)),
    )
    (event,) = [e for e in r.json()["data"] if e["data"]["spend_id"] == spend["id"]]
    assert event["data"] == {
        "spend_id": spend["id"],
        "community_id": cid,
        "wallet_id": spend["wallet_id"],
        "user": sub,
        "credits": 10,
        "fee_credits": spend["fee_credits"],
        "community_credits": spend["community_credits"],
        "reference": "t-1",
    }
    assert event["data"]["fee_credits"] + event["data"]["community_credits"] == 10


async def test_nothing_is_delivered_while_no_endpoint_is_registered(
    engine: AsyncEngine, wsettings: Settings
) -> None:
    user_id, _ = await member(engine)
    await consume(engine, wsettings, credited(user_id))
    assert (await deliver_due(engine, wsettings)).claimed == 0
    await asyncio.sleep(0)


async def test_a_redirect_is_not_followed_but_retried(
    engine: AsyncEngine,
    wsettings: Settings,
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    receiver = make_receiver()
    receiver.answers = [302]
    endpoint = await endpoints.create(receiver)
    user_id, _ = await member(engine)
    await consume(engine, wsettings, refunded(user_id))
    assert (await deliver_due(engine, wsettings)).retrying == 1
    assert len(receiver.received) == 1  # no second request to wherever a Location points
    (d,) = await _deliveries(client, endpoints, endpoint["id"])
    assert (d["status"], d["last_status_code"], d["last_error"]) == (
        "pending",
        302,
        "answered 302",
    )


async def test_production_refuses_to_post_into_our_network_at_send_time(
    engine: AsyncEngine,
    wsettings: Settings,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    """Each POST checks its URL again: in production a receiver on loopback gets nothing,
    whether named plainly or by a form only the resolver turns into 127.0.0.1."""
    receiver = make_receiver()
    port = receiver.url.split(":")[2].split("/")[0]
    production = wsettings.model_copy(
        update={
            "env": Environment.production,
            "webhook_secret_keys": SecretStr(Fernet.generate_key().decode()),
        }
    )
    event = Event(
        id=uuid.uuid4(),
        event_type="refund.succeeded",
        data={},
        occurred_at=datetime.now(UTC),
        created_at=datetime.now(UTC),
    )
    now = datetime.now(UTC)
    delivery = Delivery(
        id=uuid.uuid4(),
        endpoint_id=uuid.uuid4(),
        event_id=event.id,
        event_type=event.event_type,
        status=DeliveryStatus.pending,
        attempts=1,
        next_attempt_at=now,
        give_up_at=now,
        last_status_code=None,
        last_error=None,
        delivered_at=None,
        created_at=now,
        updated_at=now,
    )
    sealed = sealing.seal(production, "whsec_production")
    errors = []
    async with sender.client(production) as http:
        for url in (
            receiver.url,
            f"https://127.0.0.1:{port}/hooks",
            f"https://127.1:{port}/hooks",
        ):
            out = await sender.post(production, http, Outgoing(delivery, url, sealed, event))
            assert not out.succeeded and out.status_code is None
            errors.append(out.error)
    assert errors == [
        "the URL must use https",
        "the URL's host must be a public address",
        "the URL's host must resolve to public addresses only",
    ]
    assert receiver.received == []

    # And an endpoint's secret sealed under the development key is never opened there.
    await endpoints.create(receiver)
    user_id, _ = await member(engine)
    await consume(engine, wsettings, refunded(user_id))
    done = await deliver_due(engine, production)
    assert (done.claimed, done.retrying) == (1, 1)
    assert receiver.received == []


async def test_a_rotated_secret_signs_every_later_delivery(
    engine: AsyncEngine,
    wsettings: Settings,
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    make_receiver: Callable[[], Receiver],
) -> None:
    receiver = make_receiver()
    endpoint = await endpoints.create(receiver)
    old = receiver.secret
    r = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=endpoints.headers()
    )
    receiver.secret = r.json()["secret"]
    user_id, _ = await member(engine)
    await consume(engine, wsettings, refunded(user_id))
    assert (await deliver_due(engine, wsettings)).succeeded == 1
    (got,) = receiver.received
    assert got.verified
    assert not docs_verifier()(old, got.headers["CommDesk-Signature"], got.body)
