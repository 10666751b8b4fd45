"""The one delivery adapter: SMTP email and the webhook to CommDesk's notification service.

Nothing here touches the database: the delivery job (`jobs.py`) claims a delivery, calls
`send` with no transaction open, and records what came back. A failure says whether trying
again can help (`SendFailed.retryable`); its text never carries a secret or an address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import smtplib
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import httpx
from pydantic import SecretStr

from commdesk_billing.config import Settings
from commdesk_billing.modules.notifications.model import Channel, Delivery

# Sends at once (the delivery job's batch). smtplib blocks, so each email has a thread of
# this pool of its own: the default pool is shared (and smaller on a small machine), and a
# send waiting there for a thread would be waiting inside its lease.
SENDS_AT_ONCE = 8
_SMTP_THREADS = ThreadPoolExecutor(max_workers=SENDS_AT_ONCE, thread_name_prefix="smtp")

SIGNATURE_HEADER = "X-CommDesk-Signature"
TIMESTAMP_HEADER = "X-CommDesk-Timestamp"
ID_HEADER = "X-CommDesk-Notification-Id"


class SendFailed(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason[:500])
        self.retryable = retryable


class NotConfigured(Exception):
    """This process has no configuration for the channel (or the user no address): the
    delivery is recorded skipped, not failed, and never tried again by itself."""


def send_deadline_s(settings: Settings) -> float:
    """The longest one send may take, whole: the timeouts bound each step only, and a peer
    that answers a byte at a time never trips them. Cut at this, a send ends well inside
    its row's lease (`jobs._lease`): a send still going when the lease ends would be sent
    again by the next job that claims the row."""
    return 4 * max(settings.smtp_timeout_s, settings.notify_webhook_timeout_s)


def message_id(delivery: Delivery) -> str:
    """The same Message-ID for every attempt of one delivery: a receiver that got a resent
    copy (the sender died after the relay accepted it) can tell it is the same message."""
    return f"<{delivery.id}@billing.commdesk>"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 of "<timestamp>.<body>", hex: what `SIGNATURE_HEADER` carries as v1=…"""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return mac.hexdigest()


# One bare addr-spec (dot-atom local part, a host name): no display name, no list, no
# quoting, no line break. The address is the JWT's `email` claim, text billing never
# checked; anything else would be more recipients, or a header of its own.
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)


def plain_address(address: str) -> bool:
    return len(address) <= 254 and _ADDRESS.fullmatch(address) is not None


@dataclass(frozen=True)
class Outgoing:
    delivery: Delivery
    address: str | None  # the email address (email only), read when it is sent


class Adapter:
    """Sends one delivery on its channel; returns the provider's message id."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._http = http

    async def send(self, out: Outgoing) -> str:
        if out.delivery.channel is Channel.email:
            if self.settings.smtp_host is None:
                raise NotConfigured("email is not configured (BILLING_SMTP_HOST)")
            if out.address is None:
                raise NotConfigured("the user has no email address")
            if not plain_address(out.address):
                raise NotConfigured("the user's email address is not one plain address")
            return await asyncio.get_running_loop().run_in_executor(
                _SMTP_THREADS, self._smtp, out.delivery, out.address, self.settings.smtp_host
            )
        if self.settings.notify_webhook_url is None or self.settings.notify_webhook_secret is None:
            raise NotConfigured(
                "the notification webhook is not configured (BILLING_NOTIFY_WEBHOOK_URL)"
            )
        return await self._webhook(
            out.delivery, self.settings.notify_webhook_url, self.settings.notify_webhook_secret
        )

    # --- email ----------------------------------------------------------------------

    def _smtp(self, delivery: Delivery, address: str, host: str) -> str:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = s.smtp_from
        msg["To"] = address
        msg["Subject"] = str(delivery.content["subject"])
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id(delivery)
        msg.set_content(str(delivery.content["text"]))
        msg.add_alternative(str(delivery.content["html"]), subtype="html")
        deadline = send_deadline_s(s)
        # The watchdog cuts the connection at the deadline: smtplib, blocked in this
        # thread, then fails its read or write at once (connecting is bounded by the
        # timeout alone).
        session: list[smtplib.SMTP] = []
        cut = threading.Event()
        watchdog = threading.Timer(deadline, _cut, args=(session, cut))
        watchdog.start()
        try:
            with _Session(session, host, s.smtp_port, timeout=s.smtp_timeout_s) as smtp:
                if s.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_user is not None and s.smtp_password is not None:
                    smtp.login(s.smtp_user, s.smtp_password.get_secret_value())
                # The envelope names the one checked address, whatever the headers say.
                refused = smtp.send_message(msg, to_addrs=[address])
        except (OSError, smtplib.SMTPException) as exc:
            if cut.is_set():
                raise SendFailed(f"SMTP session took over {deadline:g} s", retryable=True) from exc
            raise _smtp_failure(exc) from exc
        finally:
            watchdog.cancel()
        if refused:
            raise SendFailed("recipient refused", retryable=False)
        return message_id(delivery)

    # --- webhook --------------------------------------------------------------------

    async def _webhook(self, delivery: Delivery, url: str, secret: SecretStr) -> str:
        s = self.settings
        # The delivery id goes inside the signed body as well as in `ID_HEADER` (which no
        # signature covers): a receiver drops repeats by the signed one.
        document = {**delivery.content["webhook"], "notification_id": str(delivery.id)}
        body = json.dumps(document, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: "v1=" + signature(secret.get_secret_value(), timestamp, body),
            ID_HEADER: str(delivery.id),
        }
        deadline = send_deadline_s(s)
        try:
            async with asyncio.timeout(deadline):
                if self._http is not None:
                    response = await self._http.post(url, content=body, headers=headers)
                else:
                    async with httpx.AsyncClient(timeout=s.notify_webhook_timeout_s) as client:
                        response = await client.post(url, content=body, headers=headers)
        except TimeoutError as exc:
            raise SendFailed(f"webhook took over {deadline:g} s", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise SendFailed(f"webhook unreachable: {type(exc).__name__}", retryable=True) from exc
        if response.status_code >= 300:
            code = response.status_code
            retryable = code >= 500 or code in (408, 409, 425, 429)
            raise SendFailed(f"webhook answered {code}", retryable=retryable)
        return _provider_id(response) or str(delivery.id)


class _Session(smtplib.SMTP):
    """smtplib's session, made known to the watchdog as soon as it has a socket (the
    greeting is read inside the constructor: a relay can stall there too)."""

    def __init__(self, holder: list[smtplib.SMTP], host: str, port: int, timeout: float):
        self._holder = holder
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._holder.append(self)
        return sock


def _cut(session: list[smtplib.SMTP], cut: threading.Event) -> None:
    cut.set()
    sock = session[0].sock if session else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _smtp_failure(exc: Exception) -> SendFailed:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        return SendFailed(f"recipient refused (SMTP {codes})", retryable=_transient(codes))
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return SendFailed(f"SMTP authentication failed ({exc.smtp_code})", retryable=True)
    if isinstance(exc, smtplib.SMTPResponseException):
        return SendFailed(f"SMTP {exc.smtp_code}", retryable=_transient([exc.smtp_code]))
    # Connection refused, timeouts, a dropped session: the relay may be back later.
    return SendFailed(f"SMTP unavailable: {type(exc).__name__}", retryable=True)


def _transient(codes: list[int]) -> bool:
    """SMTP 4xx is "try again later"; 5xx is a refusal that retrying will not change."""
    return all(400 <= c < 500 for c in codes)


def _provider_id(response: httpx.Response) -> str | None:
    try:
        data: Any = response.json()
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value[:300] if isinstance(value, str) and value.isprintable() and value else None
