"""A real purchase through the Cashfree sandbox, the stack's worker recording its receipt
from `payment.credited`, and the delivery job sending it: with the SMTP server down the
money is untouched and the email waits; once it is up, it arrives once."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from commdesk_billing.config import Settings
from commdesk_billing.mailsink import MailSink
from commdesk_billing.modules.notifications.jobs import deliver_due
from commdesk_billing.modules.notifications.model import Delivery
from commdesk_billing.security.jwt import Role, issue_token
from tests.harness.stack import Stack
from tests.modules.notifications.conftest import Receiver, deliveries

pytestmark = pytest.mark.slow


async def _recorded(stack: Stack, key: str) -> dict[str, Delivery]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(rows := await deliveries(stack.engine, key)) == 2:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"no deliveries recorded for {key}")


async def test_a_purchase_while_smtp_is_down_is_credited_and_its_receipt_sent_once_later(
    stack: Stack, nsettings: Settings, sink: MailSink, receiver: Receiver
) -> None:
    address = f"buyer-{uuid.uuid4().hex[:8]}@example.test"
    tok = issue_token(
        stack.settings, sub=f"buyer-{uuid.uuid4().hex}", role=Role.member, email=address
    )
    await sink.stop()
    order = await stack.buy(tok, pack_code="pack_300")
    await stack.pay(order)
    paid = await stack.wait_status(tok, order["id"], {"CREDITED"})
    wallet = await stack.wallet(tok)
    assert wallet["available_credits"] == 3200  # the money never waits on email

    key = f"payment.credited:{order['id']}"
    rows = await _recorded(stack, key)
    assert rows["email"].recipient == f"{address[0]}***@example.test"
    t0 = datetime.now(UTC)
    await deliver_due(stack.engine, nsettings, now=t0)
    email = (await deliveries(stack.engine, key))["email"]
    assert (email.status.value, email.attempts) == ("pending", 1)

    await sink.start()
    await deliver_due(stack.engine, nsettings, now=t0 + timedelta(seconds=30))
    await deliver_due(stack.engine, nsettings, now=t0 + timedelta(hours=1))
    (mail,) = [m for m in sink.messages if address in m.rcpt_tos]
    amount = paid["amount_paise"]
    rupees = f"₹{amount // 100:,}.{amount % 100:02d}"
    assert mail.message["Subject"] == f"Receipt: {rupees} paid"
    body = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "3,200 credits were added to your wallet." in body
    assert f"Order: {paid['order_id']}" in body
    final = await deliveries(stack.engine, key)
    assert {c: (d.status.value, d.attempts) for c, d in final.items()} == {
        "email": ("sent", 2),
        "webhook": ("sent", 1),
    }
