"""The member's emails, end to end to a real SMTP server (aiosmtpd): without a mandate an
order is opened and its checkout link mailed; with one the pre-debit notice's "upcoming
recharge" is mailed with the day of the debit. The delivery job is run by hand (the stack
runs no scheduler)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, date, datetime

import pytest

from commdesk_billing.config import Settings
from commdesk_billing.mailsink import MailSink
from commdesk_billing.modules.notifications.jobs import deliver_due
from commdesk_billing.security.jwt import Role, issue_token
from tests.harness.stack import Stack, StackFactory
from tests.modules.autorecharge.mandate_helpers import (
    active_mandate,
    debit,
    enable,
    grant,
    mandate_stack,
    until_decision,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def mailed(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as scope:  # torn down with the module
        yield await mandate_stack(stack_factory, scope=scope)


@pytest.fixture
async def sink() -> AsyncIterator[MailSink]:
    async with MailSink() as s:
        yield s


def _smtp(stack: Stack, sink: MailSink) -> Settings:
    return stack.settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "smtp_starttls": False,
            "smtp_from": "CommDesk Billing <billing@example.test>",
            "smtp_timeout_s": 5.0,
        }
    )


async def _member(stack: Stack) -> tuple[str, str, str]:
    address = f"member-{uuid.uuid4().hex[:8]}@example.test"
    tok = issue_token(
        stack.settings, sub=f"arm-{uuid.uuid4().hex}", role=Role.member, email=address
    )
    wid = str((await stack.wallet(tok))["id"])
    await grant(stack, wid, 300)
    return tok, wid, address


async def _mail(stack: Stack, sink: MailSink, address: str, subject: str) -> str:
    """Deliver what is due until the mail to `address` with `subject` arrived; its body."""
    for _ in range(100):
        await deliver_due(stack.engine, _smtp(stack, sink), now=datetime.now(UTC))
        found = [
            m for m in sink.messages if address in m.rcpt_tos and m.message["Subject"] == subject
        ]
        if found:
            assert len(found) == 1
            body = found[0].message.get_body(("plain",))
            assert body is not None
            return str(body.get_content())
        await asyncio.sleep(0.1)  # polling: the worker records the delivery from the event
    raise AssertionError(f"no mail {subject!r} to {address}")


async def test_without_a_mandate_the_checkout_link_is_emailed(
    mailed: Stack, sink: MailSink
) -> None:
    tok, wid, address = await _member(mailed)
    await enable(mailed, tok, wid, None)
    await debit(mailed, tok, wid, 150)
    opened = await until_decision(mailed, tok, wid, "checkout_opened")
    payment = await mailed.payment(tok, opened["data"]["payment_id"])
    assert (payment["status"], payment["channel"]) == ("ACTIVE", "order")
    body = await _mail(mailed, sink, address, "Complete your recharge of ₹150.00")
    assert opened["data"]["checkout_url"] in body
    assert "1,500 credits" in body


async def test_with_a_mandate_the_upcoming_debit_is_emailed(mailed: Stack, sink: MailSink) -> None:
    tok, wid, address = await _member(mailed)
    m = await active_mandate(mailed, tok)
    await enable(mailed, tok, wid, m["id"])
    await debit(mailed, tok, wid, 150)
    notified = await until_decision(mailed, tok, wid, "notified")
    body = await _mail(mailed, sink, address, "Upcoming automatic recharge of ₹150.00")
    day = date.fromisoformat(notified["data"]["debit_on"])
    assert f"on or after {day.day} {day:%b %Y}" in body
