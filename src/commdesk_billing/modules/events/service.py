"""Events out: recording public events with their deliveries (the consumer), and the
endpoints staff and services manage. Each change to an endpoint is audited; a secret is
returned once, by the call that made it, and is never logged or audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import (
    WebhookDeliveryNotFound,
    WebhookEndpointDisabled,
    WebhookEndpointNotFound,
    WebhookSecretsUnavailable,
    WebhookUrlRefused,
)
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.events import repository as repo
from commdesk_billing.modules.events import sealing, urls
from commdesk_billing.modules.events.model import Delivery, Endpoint
from commdesk_billing.modules.events.vocabulary import PublicEvent, translate
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.users import service as users
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.security.jwt import Principal


def retry_window(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.webhook_retry_window_s)


# --- the consumer -------------------------------------------------------------------------


async def record(
    conn: AsyncConnection, envelope: Envelope, settings: Settings
) -> list[PublicEvent]:
    """The public events of one internal event, each recorded once with one delivery per
    endpoint that wants it (a message consumed again adds nothing)."""

    async def user_of(user_id: uuid.UUID) -> str | None:
        try:
            return (await users.get_user(conn, user_id)).external_id
        except LookupError:
            return None

    async def payment_of(payment_id: uuid.UUID) -> dict[str, Any] | None:
        p = await payments.get(conn, payment_id)
        if p is None:
            return None
        return {
            "payment_id": str(p.id),
            "order_id": p.order_id,
            "user": await user_of(p.user_id),
            "amount_paise": p.amount_paise,
            "credits": p.credits,
            "kind": p.kind,
        }

    events = await translate(envelope, user_of, payment_of)
    now = datetime.now(UTC)
    for event in events:
        if await repo.insert_event(conn, event):
            await repo.insert_deliveries(conn, event, now, retry_window(settings))
    return events


# --- endpoints --------------------------------------------------------------------------


def _seal(settings: Settings, secret: str) -> str:
    try:
        return sealing.seal(settings, secret)
    except sealing.SealingUnavailable as exc:
        raise WebhookSecretsUnavailable(str(exc)) from exc


def open_secret(settings: Settings, sealed: str) -> str:
    try:
        return sealing.open_sealed(settings, sealed)
    except sealing.SealingUnavailable as exc:
        raise WebhookSecretsUnavailable(str(exc)) from exc


def check_url(settings: Settings, url: str) -> None:
    try:
        urls.parse(settings, url)
    except urls.UrlRefused as exc:
        raise WebhookUrlRefused(str(exc)) from exc


async def check_url_resolves(settings: Settings, url: str) -> None:
    """Outside any transaction: a name is resolved (production only)."""
    try:
        await urls.check_resolved(settings, url)
    except urls.UrlRefused as exc:
        raise WebhookUrlRefused(str(exc)) from exc


def _public(e: Endpoint) -> dict[str, Any]:
    """What the audit log keeps of an endpoint (never its secret)."""
    return {
        "url": e.url,
        "description": e.description,
        "event_types": e.event_types,
        "enabled": e.enabled,
    }


async def create(
    conn: AsyncConnection,
    settings: Settings,
    caller: Principal,
    *,
    url: str,
    description: str,
    event_types: list[str],
    request_id: str | None,
) -> tuple[Endpoint, str]:
    """The endpoint and its secret (shown this once)."""
    check_url(settings, url)
    secret = sealing.new_secret()
    endpoint = await repo.insert_endpoint(
        conn,
        url=url,
        description=description,
        event_types=event_types,
        secret_sealed=_seal(settings, secret),
        created_by=caller.sub,
    )
    await audit.record(
        conn,
        caller,
        action="webhook_endpoint.created",
        target_type="webhook_endpoint",
        target_id=str(endpoint.id),
        request_id=request_id,
        after=_public(endpoint),
    )
    return endpoint, secret


async def get(conn: AsyncConnection, endpoint_id: uuid.UUID, *, lock: bool = False) -> Endpoint:
    endpoint = await repo.get_endpoint(conn, endpoint_id, lock=lock)
    if endpoint is None:
        raise WebhookEndpointNotFound(f"webhook endpoint {endpoint_id} does not exist")
    return endpoint


async def update(
    conn: AsyncConnection,
    settings: Settings,
    caller: Principal,
    endpoint_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    request_id: str | None,
) -> Endpoint:
    before = await get(conn, endpoint_id, lock=True)
    url = changes.get("url", before.url)
    if url != before.url:
        check_url(settings, url)
    after = await repo.update_endpoint(
        conn,
        endpoint_id,
        url=url,
        description=changes.get("description", before.description),
        event_types=changes.get("event_types", before.event_types),
        enabled=changes.get("enabled", before.enabled),
    )
    await audit.record(
        conn,
        caller,
        action="webhook_endpoint.updated",
        target_type="webhook_endpoint",
        target_id=str(endpoint_id),
        request_id=request_id,
        before=_public(before),
        after=_public(after),
    )
    return after


async def delete(
    conn: AsyncConnection, caller: Principal, endpoint_id: uuid.UUID, *, request_id: str | None
) -> None:
    before = await get(conn, endpoint_id, lock=True)
    await repo.delete_endpoint(conn, endpoint_id)
    await audit.record(
        conn,
        caller,
        action="webhook_endpoint.deleted",
        target_type="webhook_endpoint",
        target_id=str(endpoint_id),
        request_id=request_id,
        before=_public(before),
    )


async def rotate_secret(
    conn: AsyncConnection,
    settings: Settings,
    caller: Principal,
    endpoint_id: uuid.UUID,
    *,
    request_id: str | None,
) -> tuple[Endpoint, str]:
    """A new secret at once (the old one signs nothing from now on); shown this once."""
    await get(conn, endpoint_id, lock=True)
    secret = sealing.new_secret()
    endpoint = await repo.set_secret(conn, endpoint_id, _seal(settings, secret))
    await audit.record(
        conn,
        caller,
        action="webhook_endpoint.secret_rotated",
        target_type="webhook_endpoint",
        target_id=str(endpoint_id),
        request_id=request_id,
    )
    return endpoint, secret


async def delivery_of(
    conn: AsyncConnection, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> Delivery:
    d = await repo.get_delivery(conn, delivery_id)
    if d is None or d.endpoint_id != endpoint_id:
        raise WebhookDeliveryNotFound(f"delivery {delivery_id} of this endpoint does not exist")
    return d


async def replay(
    conn: AsyncConnection,
    settings: Settings,
    caller: Principal,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    *,
    request_id: str | None,
) -> Delivery:
    """Sent again by the next delivery round, with a new retry window (the receiver gets
    the same event id: it may have it already)."""
    endpoint = await get(conn, endpoint_id)
    if not endpoint.enabled:
        raise WebhookEndpointDisabled("enable the endpoint before replaying to it")
    before = await delivery_of(conn, endpoint_id, delivery_id)
    await repo.replay(conn, delivery_id, datetime.now(UTC), retry_window(settings))
    await audit.record(
        conn,
        caller,
        action="webhook_delivery.replayed",
        target_type="webhook_delivery",
        target_id=str(delivery_id),
        request_id=request_id,
        details={"endpoint_id": str(endpoint_id), "event_id": str(before.event_id)},
        before={"status": before.status.value, "attempts": before.attempts},
    )
    return await delivery_of(conn, endpoint_id, delivery_id)
