"""Deliveries end to end in-process: the consumer's records, then the delivery job against
a real SMTP server (aiosmtpd) and a real HTTP receiver, with the job's clock moved (never
slept) to make retries due."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.mailsink import MailSink, Received
from commdesk_billing.modules.notifications import service
from commdesk_billing.modules.notifications.jobs import deliver_due
from tests.modules.notifications.conftest import (
    WEBHOOK_SECRET,
    Receiver,
    consume,
    deliveries,
    event,
    make_user,
)
from tests.modules.notifications.samples import full, minimal


def _to(sink: MailSink, address: str) -> list[Received]:
    return [m for m in sink.messages if address in m.rcpt_tos]


def _hooks(receiver: Receiver, key: str) -> list[tuple[dict[str, str], bytes]]:
    return [(h, b) for h, b in receiver.requests if json.loads(b)["notification_key"] == key]


def _address() -> str:
    return f"buyer-{uuid.uuid4().hex[:8]}@example.test"


async def test_a_receipt_is_emailed_and_posted_to_the_signed_webhook(
    engine: AsyncEngine, nsettings: Settings, sink: MailSink, receiver: Receiver
) -> None:
    address = _address()
    user = await make_user(engine, address)
    payload = {**full(str(user))["payment.credited"], "payment_id": str(uuid.uuid4())}
    key = await consume(engine, event("payment.credited", payload))
    assert key == f"payment.credited:{payload['payment_id']}"
    rows = await deliveries(engine, key)
    assert {c: (d.status.value, d.attempts, d.recipient) for c, d in rows.items()} == {
        "email": ("pending", 0, f"{address[0]}***@example.test"),
        "webhook": ("pending", 0, None),
    }

    await deliver_due(engine, nsettings)

    (mail,) = _to(sink, address)
    msg = mail.message
    assert msg["Subject"] == "Receipt: ₹354.00 paid"
    assert msg["From"] == "CommDesk Billing <billing@example.test>"
    assert msg["Message-ID"] == f"<{rows['email'].id}@billing.commdesk>"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "We received your payment of ₹354.00 (GST ₹54.00 included)" in text
    assert "3,200 credits were added to your wallet." in text
    page = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert '<h1 style="font-size: 18px;">Receipt: ₹354.00 paid</h1>' in page

    ((headers, body),) = _hooks(receiver, key)
    signed = headers["x-commdesk-timestamp"].encode() + b"." + body
    expected = hmac.new(WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["x-commdesk-signature"] == f"v1={expected}"
    wrong = hmac.new(b"another secret", signed, hashlib.sha256).hexdigest()
    assert headers["x-commdesk-signature"] != f"v1={wrong}"
    assert headers["x-commdesk-notification-id"] == str(rows["webhook"].id)
    sent = json.loads(body)
    # The header is not signed: the id a receiver drops repeats by is in the signed body
    # too (a replayed request with a new header is still the same notification).
    assert sent["notification_id"] == str(rows["webhook"].id)
    assert (sent["event"], sent["user_id"], sent["subject"]) == (
        "payment.credited",
        str(user),
        "Receipt: ₹354.00 paid",
    )
    assert (sent["data"]["amount_paise"], sent["data"]["credits"]) == (35400, 3200)
    assert address not in body.decode()  # the address goes by email only

    after = await deliveries(engine, key)
    assert {c: (d.status.value, d.attempts, d.last_error) for c, d in after.items()} == {
        "email": ("sent", 1, None),
        "webhook": ("sent", 1, None),
    }
    assert after["email"].provider_message_id == f"<{rows['email'].id}@billing.commdesk>"
    assert after["webhook"].provider_message_id is not None
    assert after["webhook"].provider_message_id.startswith("cn_")


async def test_a_redelivered_or_reannounced_event_is_sent_once(
    engine: AsyncEngine, nsettings: Settings, sink: MailSink, receiver: Receiver
) -> None:
    address = _address()
    user = await make_user(engine, address)
    payload = {**minimal(str(user))["refund.succeeded"], "refund_id": str(uuid.uuid4())}
    first = event("refund.succeeded", payload)
    key = await consume(engine, first)
    await deliver_due(engine, nsettings)
    # The broker delivers the same message again, and the event is announced again.
    assert await consume(engine, first) == key
    assert await consume(engine, event("refund.succeeded", payload)) == key
    await deliver_due(engine, nsettings)
    await deliver_due(engine, nsettings, now=datetime.now(UTC) + timedelta(days=1))
    assert [m.message["Subject"] for m in _to(sink, address)] == ["Refund of ₹0.01 processed"]
    assert len(_hooks(receiver, key)) == 1
    rows = await deliveries(engine, key)
    assert {c: (d.status.value, d.attempts) for c, d in rows.items()} == {
        "email": ("sent", 1),
        "webhook": ("sent", 1),
    }


async def test_an_smtp_server_that_is_down_is_retried_with_backoff_and_sends_once(
    engine: AsyncEngine, nsettings: Settings, sink: MailSink, receiver: Receiver
) -> None:
    address = _address()
    user = await make_user(engine, address)
    payload = {**full(str(user))["auto_recharge.succeeded"], "recharge_id": uuid.uuid4().hex}
    await sink.stop()
    key = await consume(engine, event("auto_recharge.succeeded", payload))
    t0 = datetime.now(UTC)

    await deliver_due(engine, nsettings, now=t0)
    rows = await deliveries(engine, key)
    email = rows["email"]
    assert (email.status.value, email.attempts, email.last_error) == (
        "pending",
        1,
        "SMTP unavailable: ConnectionRefusedError",
    )
    assert email.next_attempt_at == t0 + timedelta(seconds=30)  # base 30 s
    assert rows["webhook"].status.value == "sent"  # one channel down holds up no other

    await deliver_due(engine, nsettings, now=t0 + timedelta(seconds=29))  # not yet due
    assert (await deliveries(engine, key))["email"].attempts == 1

    await deliver_due(engine, nsettings, now=t0 + timedelta(seconds=30))  # due, still down
    email = (await deliveries(engine, key))["email"]
    assert (email.status.value, email.attempts) == ("pending", 2)
    assert email.next_attempt_at == t0 + timedelta(seconds=30 + 60)  # doubled

    await sink.start()  # the relay is back, on the same port
    await deliver_due(engine, nsettings, now=t0 + timedelta(seconds=90))
    await deliver_due(engine, nsettings, now=t0 + timedelta(hours=12))
    (mail,) = _to(sink, address)
    assert mail.message["Subject"] == "Automatic recharge of ₹300.00 succeeded"
    email = (await deliveries(engine, key))["email"]
    assert (email.status.value, email.attempts, email.last_error) == ("sent", 3, None)
    assert len(_hooks(receiver, key)) == 1


async def test_a_webhook_that_keeps_failing_is_given_up_then_retried_by_hand(
    engine: AsyncEngine, nsettings: Settings, receiver: Receiver
) -> None:
    user = await make_user(engine, None)
    payload = {**minimal(str(user))["auto_recharge.disabled"], "wallet_id": uuid.uuid4().hex}
    key = await consume(engine, event("auto_recharge.disabled", payload))
    receiver.answer = 503
    t0 = datetime.now(UTC)
    for wait in (0, 30, 90):  # max_attempts = 3: 30 s, then 60 s apart
        await deliver_due(engine, nsettings, now=t0 + timedelta(seconds=wait))
    rows = await deliveries(engine, key)
    hook = rows["webhook"]
    assert (hook.status.value, hook.attempts, hook.last_error, hook.next_attempt_at) == (
        "failed",
        3,
        "webhook answered 503",
        None,
    )
    assert (rows["email"].status.value, rows["email"].last_error) == (
        "skipped",
        "the user has no email address",
    )
    assert len(_hooks(receiver, key)) == 3

    receiver.answer = 200
    assert await in_transaction(engine, lambda c: service.retry_failed(c, hook.id))
    assert not await in_transaction(engine, lambda c: service.retry_failed(c, hook.id))
    await deliver_due(engine, nsettings)
    hook = (await deliveries(engine, key))["webhook"]
    assert (hook.status.value, hook.attempts) == ("sent", 4)
    assert len(_hooks(receiver, key)) == 4


async def test_a_refusal_is_not_retried(
    engine: AsyncEngine, nsettings: Settings, receiver: Receiver
) -> None:
    user = await make_user(engine, None)
    payload = {**minimal(str(user))["mandate.status_changed"], "mandate_id": uuid.uuid4().hex}
    key = await consume(engine, event("mandate.status_changed", payload))
    receiver.answer = 400
    await deliver_due(engine, nsettings)
    hook = (await deliveries(engine, key))["webhook"]
    assert (hook.status.value, hook.attempts, hook.last_error) == (
        "failed",
        1,
        "webhook answered 400",
    )


async def test_a_payee_is_told_by_webhook_only(
    engine: AsyncEngine, nsettings: Settings, receiver: Receiver
) -> None:
    payload = {**full()["settlement.paid"], "settlement_id": str(uuid.uuid4())}
    key = await consume(engine, event("settlement.paid", payload))
    await deliver_due(engine, nsettings)
    rows = await deliveries(engine, key)
    assert {c: d.status.value for c, d in rows.items()} == {"webhook": "sent"}
    ((_, body),) = _hooks(receiver, key)
    sent = json.loads(body)
    assert (sent["payee_id"], sent["subject"], "user_id" in sent) == (
        payload["payee_id"],
        "Payout of ₹980.00 sent",
        False,
    )


async def test_channels_without_configuration_are_skipped_and_say_why(
    engine: AsyncEngine, settings: Settings, sink: MailSink, receiver: Receiver
) -> None:
    address = _address()
    user = await make_user(engine, address)
    payload = {**full(str(user))["wallet.low_balance"]}
    key = await consume(engine, event("wallet.low_balance", payload))
    bare = settings.model_copy(update={"smtp_host": None, "notify_webhook_url": None})
    await deliver_due(engine, bare)
    rows = await deliveries(engine, key)
    assert {c: (d.status.value, d.last_error) for c, d in rows.items()} == {
        "email": ("skipped", "email is not configured (BILLING_SMTP_HOST)"),
        "webhook": (
            "skipped",
            "the notification webhook is not configured (BILLING_NOTIFY_WEBHOOK_URL)",
        ),
    }
    assert _to(sink, address) == [] and _hooks(receiver, key) == []


async def test_an_address_that_is_not_one_plain_address_is_never_sent_to(
    engine: AsyncEngine, nsettings: Settings, sink: MailSink, receiver: Receiver
) -> None:
    # The address is the JWT's `email` claim as CommDesk sent it: a list or a display
    # name in it must not become more recipients (or a forged header).
    tag = uuid.uuid4().hex[:8]
    bad = [
        f"one-{tag}@example.test, two-{tag}@example.test",
        f"Someone <three-{tag}@example.test>",
        f"four-{tag}@example.test\r\nBcc: five-{tag}@example.test",
        f"six-{tag}",
    ]
    keys = []
    for address in bad:
        user = await make_user(engine, address)
        payload = {**minimal(str(user))["refund.succeeded"], "refund_id": str(uuid.uuid4())}
        keys.append(await consume(engine, event("refund.succeeded", payload)))
    await deliver_due(engine, nsettings)
    assert [m for m in sink.messages if tag in " ".join(m.rcpt_tos)] == []
    for key in keys:
        email = (await deliveries(engine, key))["email"]
        assert (email.status.value, email.last_error) == (
            "skipped",
            "the user's email address is not one plain address",
        )
