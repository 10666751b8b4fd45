"""Notification deliveries, as read from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    email = "email"
    webhook = "webhook"


class DeliveryStatus(StrEnum):
    pending = "pending"  # due at next_attempt_at (again, after a failed attempt)
    sent = "sent"
    failed = "failed"  # for good: the last attempt failed, or the provider refused it
    skipped = "skipped"  # the channel is not configured, or the user has no email address


@dataclass(frozen=True)
class Rendered:
    """One notification, rendered: what every channel sends."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Delivery:
    id: uuid.UUID
    notification_key: str
    channel: Channel
    event_type: str
    template: str
    user_id: uuid.UUID | None
    recipient: str | None  # the email address, masked (email only)
    content: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    provider_message_id: str | None
    created_at: datetime
    updated_at: datetime


def mask_email(address: str) -> str:
    """'a***@example.com': enough for a person to recognise, not to write to."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"[:300]
