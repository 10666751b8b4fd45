"""`commdesk-billing smtp-sink`, as the local stack starts it: a child process on a free
port that billing's own adapter sends to, each message a file in its Maildir."""

from __future__ import annotations

import mailbox
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commdesk_billing.config import Settings
from commdesk_billing.modules.notifications.delivery import Adapter, Outgoing
from commdesk_billing.modules.notifications.model import Channel, Delivery, DeliveryStatus
from commdesk_billing.stack import smtp_sink_process


@pytest.mark.slow  # a child process: about 2 s to start on a loaded machine
async def test_the_stacks_smtp_sink_writes_each_email_into_its_maildir(
    settings: Settings, tmp_path: Path
) -> None:
    maildir = tmp_path / "var" / "mail"  # its parent made too, as var/ in a fresh clone
    async with smtp_sink_process(maildir) as env:
        assert (env["BILLING_SMTP_HOST"], env["BILLING_SMTP_STARTTLS"]) == ("127.0.0.1", "false")
        pointed = settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": int(env["BILLING_SMTP_PORT"]),
                    "smtp_starttls": False}
        )  # fmt: skip
        now = datetime.now(UTC)
        delivery = Delivery(
            id=uuid.uuid4(),
            notification_key="payment.credited:x",
            channel=Channel.email,
            event_type="payment.credited",
            template="payment_receipt",
            user_id=None,
            recipient=None,
            content={"subject": "Receipt: ₹354.00 paid", "text": "₹354.00\n", "html": "<p/>"},
            status=DeliveryStatus.pending,
            attempts=1,
            last_error=None,
            next_attempt_at=now,
            sent_at=None,
            provider_message_id=None,
            created_at=now,
            updated_at=now,
        )
        await Adapter(pointed).send(Outgoing(delivery, "someone@example.test"))
    (message,) = mailbox.Maildir(maildir, create=False)
    assert message["To"] == "someone@example.test"
    assert message["Message-ID"] == f"<{delivery.id}@billing.commdesk>"
    assert "=?utf-8?" in message["Subject"]  # ₹ travels encoded; decoded it is the subject
