"""Events out over HTTP: the webhook endpoints CommDesk services register (and their
delivery log, and replays), and the public events for those who pull (`GET /v1/events`).
Who may call them: `auth.py`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.errors import EventNotFound
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.events import auth, service
from commdesk_billing.modules.events import repository as repo
from commdesk_billing.modules.events.schemas import (
    DeliveryOut,
    DeliveryPage,
    EndpointIn,
    EndpointOut,
    EndpointPage,
    EndpointPatch,
    EndpointWithSecret,
    EventOut,
    EventPage,
    EventType,
)
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import documented
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header
from commdesk_billing.security.timestamps import Timestamp

router = APIRouter(prefix="/v1", tags=["events"])

_MANAGE = for_services(Scope.webhooks_manage)
_READ = for_services(Scope.events_read, Scope.webhooks_manage)
_ENDPOINTS = documented(
    {
        400: "The URL is not allowed (`webhook_url_refused`): https only; in production a "
        "public host only. A create without a valid Idempotency-Key",
        401: "No valid bearer token",
        403: "Only finance_admin and services with webhooks:manage manage webhooks",
        404: "No such endpoint or delivery",
        409: "The endpoint is disabled (`webhook_endpoint_disabled`): enable it to replay; "
        "or a create with the same Idempotency-Key in flight",
        422: "Body or query invalid, a bad cursor, or a create's key reused with another body",
        503: "No key to seal endpoint secrets (`webhook_secrets_unavailable`)",
    }
)
_EVENTS = documented(
    {
        401: "No valid bearer token",
        403: "Only finance_admin, auditor and services with events:read read events",
        404: "No such event",
        422: "Query invalid, or a bad cursor",
    }
)


def _rid(request: Request) -> str | None:
    return sane_header(request.headers.get("x-request-id"))


@router.post(
    "/webhook-endpoints",
    status_code=201,
    response_model=EndpointWithSecret,
    responses=_ENDPOINTS,
    openapi_extra=_MANAGE,
    summary="Register a webhook endpoint; its signing secret is in this answer only "
    "(and in a retry of it with the same Idempotency-Key)",
)
async def create_endpoint(
    body: EndpointIn,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Keyed like every other creating POST, so a retried create makes no second endpoint.
    The answer kept under the key holds the secret sealed, as the endpoint row does (never
    in the clear at rest); a replay to the same caller with the same key, within the keys'
    retention, opens it and shows it again: that caller was shown it already."""
    auth.may_manage(caller)
    service.check_url(settings, body.url)
    await service.check_url_resolves(settings, body.url)

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        endpoint, _secret = await service.create(
            conn,
            settings,
            caller,
            url=body.url,
            description=body.description,
            event_types=list(body.event_types),
            request_id=_rid(request),
        )
        out = EndpointOut.of(endpoint).model_dump(mode="json")
        return Answer(201, {**out, _SEALED: endpoint.secret_sealed})

    keyed = KeyedRequest(
        scope=caller.sub,
        key=key,
        method=request.method,
        path=request.url.path,
        body=body.model_dump(mode="json"),
    )
    answer = await run_keyed(engine, keyed, work)
    if _SEALED in answer.body:
        shown = {k: v for k, v in answer.body.items() if k != _SEALED}
        shown["secret"] = service.open_secret(settings, answer.body[_SEALED])
        answer = Answer(answer.status, shown, replayed=answer.replayed)
    return respond(answer)


# The stored answer's field for the sealed secret (replaced by `secret` before it is sent).
_SEALED = "secret_sealed"


@router.get(
    "/webhook-endpoints",
    response_model=EndpointPage,
    responses=_ENDPOINTS,
    openapi_extra=_MANAGE,
    summary="The webhook endpoints, newest first (keyset cursor)",
)
async def list_endpoints(
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EndpointPage:
    auth.may_manage(caller)
    before = decode_cursor("whe", cursor) if cursor else None

    async def read(conn: AsyncConnection) -> EndpointPage:
        rows = await repo.list_endpoints(conn, before, limit + 1)
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return EndpointPage(
            data=[EndpointOut.of(e) for e in page],
            next_cursor=encode_cursor("whe", last.created_at, last.id) if last else None,
        )

    return await in_transaction(engine, read)


@router.get(
    "/webhook-endpoints/{endpoint_id}",
    response_model=EndpointOut,
    responses=_ENDPOINTS,
    openapi_extra=_MANAGE,
    summary="One webhook endpoint (never its secret)",
)
async def get_endpoint(endpoint_id: uuid.UUID, engine: Engine, caller: Caller) -> EndpointOut:
    auth.may_manage(caller)
    return EndpointOut.of(await in_transaction(engine, lambda c: service.get(c, endpoint_id)))


@router.patch(
    "/webhook-endpoints/{endpoint_id}",
    response_model=EndpointOut,
    responses=_ENDPOINTS,
    openapi_extra=_MANAGE,
    summary="Change an endpoint: its URL, description, event types, or enable/disable it",
)
async def update_endpoint(
    endpoint_id: uuid.UUID,
    body: EndpointPatch,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
) -> EndpointOut:
    auth.may_manage(caller)
    changes = body.model_dump(exclude_none=True)
    if "url" in changes:
        service.check_url(settings, changes["url"])
        await service.check_url_resolves(settings, changes["url"])
    endpoint = await in_transaction(
        engine,
        lambda conn: service.update(
            conn, settings, caller, endpoint_id, changes, request_id=_rid(request)
        ),
    )
    return EndpointOut.of(endpoint)


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    status_code=204,
    responses=_ENDPOINTS,
    openapi_extra=_MANAGE,
    summary="Delete an endpoint, with its delivery log (the events stay)",
)
async def delete_endpoint(
    endpoint_id: uuid.UUID, request: Request, engine: Engine, caller: Caller
) -> Response:
    auth.may_manage(caller)
    await in_transaction(
        engine, lambda conn: service.delete(conn, caller, endpoint_id, request_id=_rid(request))
    )
    return Response(status_code=204)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=EndpointWithSecret,
    responses=_ENDPOINTS,
    openapi_extra=_MANAGE,
    summary="A new signing secret, in force at once; in this answer only",
)
async def rotate_secret(
    endpoint_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> EndpointWithSecret:
    auth.may_manage(caller)
    endpoint, secret = await in_transaction(
        engine,
        lambda conn: service.rotate_secret(
            conn, settings, caller, endpoint_id, request_id=_rid(request)
        ),
    )
    return EndpointWithSecret(**EndpointOut.of(endpoint).model_dump(), secret=secret)


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    response_model=DeliveryPage,
    responses=_ENDPOINTS,
    openapi_extra=_MANAGE,
    summary="An endpoint's deliveries, newest first, each with its attempts",
)
async def list_deliveries(
    endpoint_id: uuid.UUID,
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryPage:
    auth.may_manage(caller)
    before = decode_cursor("whd", cursor) if cursor else None

    async def read(conn: AsyncConnection) -> DeliveryPage:
        await service.get(conn, endpoint_id)
        rows = await repo.list_deliveries(conn, endpoint_id, before, limit + 1)
        page = rows[:limit]
        attempts = await repo.attempts_of(conn, [d.id for d in page])
        last = page[-1] if len(rows) > limit else None
        return DeliveryPage(
            data=[DeliveryOut.of(d, attempts[d.id]) for d in page],
            next_cursor=encode_cursor("whd", last.created_at, last.id) if last else None,
        )

    return await in_transaction(engine, read)


@router.post(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay",
    response_model=DeliveryOut,
    responses=_ENDPOINTS,
    openapi_extra=_MANAGE,
    summary="Send a delivery again (same event id), with a new retry window",
)
async def replay_delivery(
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
) -> DeliveryOut:
    auth.may_manage(caller)

    async def work(conn: AsyncConnection) -> DeliveryOut:
        d = await service.replay(
            conn, settings, caller, endpoint_id, delivery_id, request_id=_rid(request)
        )
        return DeliveryOut.of(d, (await repo.attempts_of(conn, [d.id]))[d.id])

    return await in_transaction(engine, work)


@router.get(
    "/events",
    response_model=EventPage,
    responses=_EVENTS,
    openapi_extra=_READ,
    summary="The public billing events, newest first (keyset cursor)",
)
async def list_events(
    engine: Engine,
    caller: Caller,
    type: Annotated[EventType | None, Query(description="Only this event type")] = None,
    created_after: Annotated[
        Timestamp | None, Query(description="Only events recorded after this (excluded)")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EventPage:
    auth.may_read_events(caller)
    before = decode_cursor("evt", cursor) if cursor else None
    after: datetime | None = created_after

    async def read(conn: AsyncConnection) -> EventPage:
        rows = await repo.list_events(
            conn, event_type=type, created_after=after, before=before, limit=limit + 1
        )
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return EventPage(
            data=[EventOut.of(e) for e in page],
            next_cursor=encode_cursor("evt", last.created_at, last.id) if last else None,
        )

    return await in_transaction(engine, read)


@router.get(
    "/events/{event_id}",
    response_model=EventOut,
    responses=_EVENTS,
    openapi_extra=_READ,
    summary="One public event, as its webhooks carried it",
)
async def get_event(event_id: uuid.UUID, engine: Engine, caller: Caller) -> EventOut:
    auth.may_read_events(caller)
    event = await in_transaction(engine, lambda c: repo.get_event(c, event_id))
    if event is None:
        raise EventNotFound(f"event {event_id} does not exist")
    return EventOut.of(event)
