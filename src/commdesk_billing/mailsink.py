"""A loopback SMTP server that keeps what it is sent: development and tests only.

`commdesk-billing smtp-sink` runs one (the local stack starts it and points BILLING_SMTP_*
at it), writing each message into a Maildir (`var/mail/new/…`), so the emails billing sends
can be read as files. The tests run the same server in their own event loop and read
`messages`. It is aiosmtpd's SMTP protocol on an asyncio server of our own: stopped and
started again on the same port, it plays a relay that went down and came back.
"""

from __future__ import annotations

import asyncio
import email
import mailbox
from dataclasses import dataclass
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP


@dataclass(frozen=True)
class Received:
    mail_from: str | None
    rcpt_tos: tuple[str, ...]
    message: Message


class MailSink:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, maildir: Path | None = None):
        self.host = host
        self.port = port
        self.messages: list[Received] = []
        self._box: mailbox.Maildir | None = None
        if maildir is not None:
            maildir.parent.mkdir(parents=True, exist_ok=True)  # Maildir makes only its own
            self._box = mailbox.Maildir(maildir, create=True)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="commdesk-billing-sink"), self.host, self.port
        )
        # Port 0 asked for a free one: later restarts keep the one given.
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def __aenter__(self) -> MailSink:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # aiosmtpd's handler hook: called once per message accepted.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        body = raw if isinstance(raw, bytes) else str(raw).encode()
        message = email.message_from_bytes(body, policy=default)
        self.messages.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), message))
        if self._box is not None:
            self._box.add(body)
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, maildir: Path, stop: asyncio.Event) -> MailSink:
    """Run a sink until `stop` is set; returns it stopped."""
    sink = MailSink(host=host, port=port, maildir=maildir)
    async with sink:
        await stop.wait()
    return sink
