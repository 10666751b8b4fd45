"""An error a worker's handler did not expect reaches Sentry (a loopback envelope receiver)
in the trace of the message that caused it, and without the card, UPI address, token or
account number the failure carried."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import aio_pika
import pytest
import sentry_sdk
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.topology import PERSISTENT, delete
from commdesk_billing.queues.worker import Worker, names_for
from commdesk_billing.telemetry import errors
from tests.harness.sentry import SentryReceiver, sentry_receiver

TRACE_ID = "5e3f0c2a9b7d41e8a6c4b2d0f1e3a5c7"
PARENT_SPAN = "a1b2c3d4e5f60718"
CARD = "4111 1111 1111 1111"
VPA = "rahul.sharma@okaxis"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJidXllciJ9.c2lnbmF0dXJlLXNlY3JldA"
ACCOUNT = "026291800001191"
IFSC = "YESB0000262"


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    with sentry_receiver() as r:
        try:
            yield r
        finally:
            errors.close()  # the rest of the run reports nothing


async def test_a_handler_crash_reaches_sentry_in_its_trace_without_pii(
    receiver: SentryReceiver, settings: Settings, engine: AsyncEngine
) -> None:
    s = settings.model_copy(
        update={
            "sentry_dsn": SecretStr(receiver.dsn),
            "rabbitmq_queue_prefix": f"sentry{uuid.uuid4().hex[:8]}.",
            "max_attempts": 1,  # straight to the DLQ: one failure, one event
        }
    )

    async def crashes(conn: AsyncConnection, envelope: Envelope) -> None:
        # What a careless integration might attach: scrubbed by key on the way out.
        sentry_sdk.set_context("payout", {"account_number": ACCOUNT, "ifsc": IFSC})
        raise RuntimeError(
            f"gateway said no for card {CARD} (upi {VPA}), sent Authorization: Bearer {BEARER}"
        )

    names = names_for(s)
    try:
        async with Worker(
            s, handlers={"analytics.billing": crashes}, relay=False, engine=engine
        ) as worker:
            assert worker.readiness()["consumers"]
            body = Envelope(
                id=uuid.uuid4(),
                type="analytics.test",
                occurred_at=datetime.now(UTC),
                traceparent=f"00-{TRACE_ID}-{PARENT_SPAN}-01",
                payload={"card_number": CARD.replace(" ", ""), "vpa": VPA},
            ).encode()
            connection = await aio_pika.connect(s.rabbitmq_url)
            async with connection:
                channel = await connection.channel()
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=PERSISTENT),
                    routing_key=names.work("analytics.billing"),
                )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not receiver.events():
                await asyncio.to_thread(errors.flush, 2.0)
                await asyncio.sleep(0.1)
    finally:
        connection = await aio_pika.connect(s.rabbitmq_url)
        async with connection:
            await delete(await connection.channel(), names)

    events = receiver.events()
    assert len(events) == 1, events
    event = events[0]
    # In the message's trace: the tag, Sentry's own trace context and ours agree.
    assert event["tags"]["trace_id"] == TRACE_ID
    assert event["contexts"]["trace"]["trace_id"] == TRACE_ID
    assert event["contexts"]["otel"]["trace_id"] == TRACE_ID
    assert event["tags"]["service"] == "worker"
    assert event["environment"] == s.env.value
    assert event["release"].startswith("commdesk-billing@")
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"] == (
        "gateway said no for card [REDACTED] (upi [REDACTED]), "
        "sent Authorization: Bearer [REDACTED]"
    )
    assert event["contexts"]["payout"] == {"account_number": "[REDACTED]", "ifsc": "[REDACTED]"}
    # No frame's local variables (they would hold the envelope), no user, no request.
    frames = exception["stacktrace"]["frames"]
    assert frames and not any("vars" in f for f in frames)
    assert "user" not in event and "request" not in event
    raw = receiver.raw().decode()
    for secret in (CARD, CARD.replace(" ", ""), VPA, BEARER, ACCOUNT, IFSC):
        assert secret not in raw, secret
