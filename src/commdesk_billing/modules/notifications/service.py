"""Recording notifications (inside the consumer's transaction) and reading their
deliveries. Sending is `jobs.py`'s, outside any transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.notifications import repository as repo
from commdesk_billing.modules.notifications.catalog import CATALOG, Payload, Spec, UserPayload
from commdesk_billing.modules.notifications.model import (
    Channel,
    Delivery,
    DeliveryStatus,
    Rendered,
    mask_email,
)
from commdesk_billing.modules.notifications.render import render
from commdesk_billing.modules.users import service as users
from commdesk_billing.queues.envelope import Envelope

log = structlog.get_logger(__name__)


class UnknownEvent(LookupError):
    """An event type no notification is made of."""


class UnknownRecipient(LookupError):
    """The event names a user billing does not know."""


def spec_for(event_type: str) -> Spec:
    spec = CATALOG.get(event_type)
    if spec is None:
        raise UnknownEvent(f"no notification is made of {event_type}")
    return spec


def notification_key(event_type: str, payload: Payload, envelope: Envelope) -> str:
    return f"{event_type}:{spec_for(event_type).identity(payload, envelope)}"[:300]


def rendered(event_type: str, payload: Payload) -> Rendered:
    spec = spec_for(event_type)
    return render(spec.template, spec.view(payload))


async def record(conn: AsyncConnection, envelope: Envelope) -> str:
    """The event's notification, one delivery per channel, written in the caller's
    transaction: pending (whether a channel is configured is the sender's to say, when it
    sends), or skipped for a user with no email address; a key recorded before adds
    nothing.
    Raises UnknownEvent, UnknownRecipient, or pydantic's ValidationError for a payload
    that is not what the catalog says. Returns the notification key."""
    spec = spec_for(envelope.type)
    payload = spec.payload.model_validate(envelope.payload)
    key = notification_key(envelope.type, payload, envelope)
    message = render(spec.template, spec.view(payload))
    now = datetime.now(UTC)
    user_id: uuid.UUID | None = None
    audience: dict[str, str]
    if isinstance(payload, UserPayload):
        user_id = payload.user_id
        audience = {"user_id": str(user_id)}
    else:
        audience = {"payee_id": str(getattr(payload, "payee_id", ""))}

    def new(
        channel: Channel, content: dict[str, Any], recipient: str | None, skip: str | None
    ) -> repo.NewDelivery:
        return repo.NewDelivery(
            notification_key=key,
            channel=channel,
            event_type=envelope.type,
            template=spec.template,
            user_id=user_id,
            recipient=recipient,
            content=content,
            status=DeliveryStatus.skipped if skip else DeliveryStatus.pending,
            last_error=skip,
            next_attempt_at=None if skip else now,
        )

    rows: list[repo.NewDelivery] = []
    if user_id is not None:
        try:
            user = await users.get_user(conn, user_id)
        except LookupError as exc:
            raise UnknownRecipient(f"{envelope.type}: user {user_id} does not exist") from exc
        email = {"subject": message.subject, "text": message.text, "html": message.html}
        if not user.email:
            rows.append(new(Channel.email, email, None, "the user has no email address"))
        else:
            rows.append(new(Channel.email, email, mask_email(user.email), None))
    webhook = {
        "webhook": {
            "notification_key": key,
            "event": envelope.type,
            "template": spec.template,
            **audience,
            "subject": message.subject,
            "text": message.text,
            "data": payload.model_dump(mode="json"),
        }
    }
    rows.append(new(Channel.webhook, webhook, None, None))
    added = [r.channel.value for r in rows if await repo.insert(conn, r)]
    log.info("notification.recorded", key=key, event_type=envelope.type, channels=added)
    return key


async def deliveries(conn: AsyncConnection, notification_key: str) -> list[Delivery]:
    return await repo.for_key(conn, notification_key)


async def recent(
    conn: AsyncConnection, status: DeliveryStatus | None = None, limit: int = 50
) -> list[Delivery]:
    return await repo.listing(conn, status, limit)


async def retry_failed(conn: AsyncConnection, delivery_id: uuid.UUID) -> bool:
    """Make a delivery that failed for good, or was skipped, due now (its attempts keep
    counting)."""
    return await repo.retry(conn, delivery_id, datetime.now(UTC))
