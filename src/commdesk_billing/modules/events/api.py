"""Events out over HTTP: the webhook endpoints CommDesk services register (and their
delivery log, and replays), and the public events for those who pull (`GET /v1/events`).
Who may call them: `auth.py`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
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
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header
from commdesk_billing.security.timestamps import Timestamp

router = APIRouter(prefix="/v1", tags=["events"])

_MANAGE = for_services(Scope.webhooks_manage)
_READ = for_services(Scope.events_read, Scope.webhooks_manage)
# Each route names its own errors (problems.errors); 401, 429 and 503 are added for all.
_NOT_MANAGER = "Not finance_admin, nor a service with webhooks:manage (`forbidden`)"
_NO_ENDPOINT = "No such webhook endpoint (`webhook_endpoint_not_found`)"
_URL_REFUSED = (
    "The URL is not one billing will POST to (`webhook_url_refused`): https only (plain http "
    "to a loopback address outside production), no credentials or fragment; in production "
    "a host that resolves to public addresses only"
)
_NO_SEALING_KEY = (
    "No usable key to seal or open endpoint secrets (`webhook_secrets_unavailable`): "
    "BILLING_WEBHOOK_SECRET_KEYS unset in production, or not holding the key that sealed it"
)
_PAGE_INVALID = (
    "`limit` out of 1..200 (`validation_error`), or a `cursor` this API did not give out "
    "(`invalid_cursor`)"
)

# Request body examples: sent as they are by tests/contract/test_examples.py (a development
# stack, where any https URL is accepted), so each must be accepted there. In production the
# host must also resolve to public addresses: a reader puts their own receiver's URL.
_CREATE_EXAMPLES: dict[str, Any] = {
    "some_types": {
        "summary": "Receive credited payments and finished refunds",
        "value": {
            "url": "https://hooks.example.com/commdesk-billing",
            "description": "ledger sync",
            "event_types": ["payment.credited", "refund.succeeded"],
        },
    },
    "every_type": {
        "summary": "Receive every event type (an empty list)",
        "value": {"url": "https://hooks.example.com/billing-all", "event_types": []},
    },
}
_PATCH_EXAMPLES: dict[str, Any] = {
    "disable": {"summary": "Stop deliveries for now", "value": {"enabled": False}},
    "retarget": {
        "summary": "Move it to a new URL and narrow its event types",
        "value": {
            "url": "https://hooks.example.com/commdesk-billing/v2",
            "event_types": ["payment.credited"],
            "enabled": True,
        },
    },
}


def _rid(request: Request) -> str | None:
    return sane_header(request.headers.get("x-request-id"))


@router.post(
    "/webhook-endpoints",
    status_code=201,
    response_model=EndpointWithSecret,
    responses=errors(
        {
            400: f"{_URL_REFUSED}; or the Idempotency-Key missing "
            "(`idempotency_key_required`) or malformed (`idempotency_key_invalid`)",
            403: _NOT_MANAGER,
            409: "A create with the same Idempotency-Key is still running "
            "(`idempotency_key_in_use`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid: an unknown event type, a type twice, an unknown field "
            "(`validation_error`); or the Idempotency-Key reused with another body "
            "(`idempotency_key_reused`)",
            503: _NO_SEALING_KEY,
        }
    ),
    openapi_extra=_MANAGE,
    summary="Register a webhook endpoint (webhooks:manage services, finance_admin)",
)
async def create_endpoint(
    body: Annotated[EndpointIn, Body(openapi_examples=_CREATE_EXAMPLES)],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Registers a URL that billing POSTs the chosen public events to, each signed with the
    endpoint's secret; an empty `event_types` means every type. The answer (201) is the
    only place the signing `secret` is shown: store it now, or rotate it later. A retry
    with the same Idempotency-Key (within the keys' retention) makes no second endpoint
    and shows the same secret to the same caller again; it is kept sealed at rest, never
    in the clear."""
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

    keyed = KeyedRequest.of(request, caller.sub, key, body)
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
    responses=errors({403: _NOT_MANAGER, 422: _PAGE_INVALID}),
    openapi_extra=_MANAGE,
    summary="The webhook endpoints, newest first (webhooks:manage services, finance_admin)",
)
async def list_endpoints(
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EndpointPage:
    """Every registered endpoint of this deployment (whoever made it), newest first, with
    whether it is enabled and since when it has been failing; never a secret. Pages of
    `limit`; pass `next_cursor` back as `cursor` until it is null."""
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
    responses=errors({403: _NOT_MANAGER, 404: _NO_ENDPOINT}),
    openapi_extra=_MANAGE,
    summary="One webhook endpoint, never its secret (webhooks:manage services, finance_admin)",
)
async def get_endpoint(endpoint_id: uuid.UUID, engine: Engine, caller: Caller) -> EndpointOut:
    """An endpoint's URL, event types and state. `enabled` false means nothing is sent to
    it; with a `disabled_reason`, billing disabled it itself after its deliveries kept
    failing (since `failing_since`). Its secret is never shown again: rotate it if
    lost."""
    auth.may_manage(caller)
    return EndpointOut.of(await in_transaction(engine, lambda c: service.get(c, endpoint_id)))


@router.patch(
    "/webhook-endpoints/{endpoint_id}",
    response_model=EndpointOut,
    responses=errors(
        {
            400: _URL_REFUSED,
            403: _NOT_MANAGER,
            404: _NO_ENDPOINT,
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid: an unknown event type, a type twice, an unknown field "
            "(`validation_error`)",
        }
    ),
    openapi_extra=_MANAGE,
    summary="Change an endpoint's URL, description or event types, or enable or disable it "
    "(webhooks:manage services, finance_admin)",
)
async def update_endpoint(
    endpoint_id: uuid.UUID,
    body: Annotated[EndpointPatch, Body(openapi_examples=_PATCH_EXAMPLES)],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
) -> EndpointOut:
    """Changes only the fields the body names and answers the endpoint as it now is; a new
    URL is checked as on create, and the change is audited. Enabling clears
    `disabled_reason` and `failing_since`; events recorded while it was disabled were not
    queued for it (pull them from `GET /v1/events`), and failed deliveries go again only
    when replayed."""
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
    responses=errors(
        {
            403: _NOT_MANAGER,
            404: "No such webhook endpoint, or deleted already (`webhook_endpoint_not_found`)",
        }
    ),
    openapi_extra=_MANAGE,
    summary="Delete an endpoint and its delivery log (webhooks:manage services, finance_admin)",
)
async def delete_endpoint(
    endpoint_id: uuid.UUID, request: Request, engine: Engine, caller: Caller
) -> Response:
    """Removes the endpoint with its deliveries and their attempts (204); nothing more is
    sent to it. The events themselves stay, readable at `GET /v1/events`. The deletion is
    audited; to pause deliveries instead, set `enabled` to false."""
    auth.may_manage(caller)
    await in_transaction(
        engine, lambda conn: service.delete(conn, caller, endpoint_id, request_id=_rid(request))
    )
    return Response(status_code=204)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=EndpointWithSecret,
    responses=errors({403: _NOT_MANAGER, 404: _NO_ENDPOINT, 503: _NO_SEALING_KEY}),
    openapi_extra=_MANAGE,
    summary="Rotate an endpoint's signing secret (webhooks:manage services, finance_admin)",
)
async def rotate_secret(
    endpoint_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> EndpointWithSecret:
    """Makes a new signing secret, in force at once: every delivery from now on is signed
    with it and the old one signs nothing. The answer is the only place the new `secret`
    is shown; update the receiver before (or as) you call this. Audited, without the
    secret."""
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
    responses=errors(
        {
            403: _NOT_MANAGER,
            404: _NO_ENDPOINT,
            422: _PAGE_INVALID,
        }
    ),
    openapi_extra=_MANAGE,
    summary="An endpoint's deliveries with their attempts, newest first (webhooks:manage "
    "services, finance_admin)",
)
async def list_deliveries(
    endpoint_id: uuid.UUID,
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryPage:
    """The delivery log of one endpoint: each event sent (or due) to it, its `status`
    (`pending` while retries remain, `succeeded`, `failed` once the retry window ended)
    and every attempt's HTTP status, error and duration. Use it to see why a receiver
    missed an event, then replay that delivery. Pages of `limit`; pass `next_cursor` back
    as `cursor`."""
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
    responses=errors(
        {
            403: _NOT_MANAGER,
            404: "No such webhook endpoint (`webhook_endpoint_not_found`), or no such "
            "delivery of it (`webhook_delivery_not_found`)",
            409: "The endpoint is disabled (`webhook_endpoint_disabled`): enable it first",
        }
    ),
    openapi_extra=_MANAGE,
    summary="Send a delivery again, with a new retry window (webhooks:manage services, "
    "finance_admin)",
)
async def replay_delivery(
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
) -> DeliveryOut:
    """Puts the delivery back in the queue: the next delivery round sends it, with the
    same event id (a receiver may have it already: dedupe on the id) and a fresh retry
    window. The answer is the delivery as it now stands (`pending`); follow it in the
    endpoint's delivery log. Audited."""
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
    responses=errors(
        {
            403: "Not finance_admin or auditor, nor a service with events:read or "
            "webhooks:manage (`forbidden`)",
            422: "`type` not a public event type, `created_after` not a timestamp with an "
            "offset in [2000, 2100), or `limit` out of 1..200 (`validation_error`); a "
            "`cursor` this API did not give out (`invalid_cursor`)",
        }
    ),
    openapi_extra=_READ,
    summary="The public billing events, newest first (events:read services, auditor, "
    "finance_admin)",
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
    """The events billing publishes (the same ones its webhooks carry), for a service that
    pulls instead of, or as well as, receiving them: filter by `type`, or by
    `created_after` to catch up from the last one seen. Pages of `limit`, newest first;
    pass `next_cursor` back as `cursor` until it is null."""
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
    responses=errors(
        {
            403: "The caller may not read events: not finance_admin or auditor, nor a "
            "service with events:read or webhooks:manage (`forbidden`)",
            404: "No such event (`event_not_found`)",
        }
    ),
    openapi_extra=_READ,
    summary="One public event by id (events:read services, auditor, finance_admin)",
)
async def get_event(event_id: uuid.UUID, engine: Engine, caller: Caller) -> EventOut:
    """A public event by its id (the `id` of a webhook's body), with the same `type`,
    `occurred_at` and `data` its webhooks carried. A receiver can fetch it to check a
    delivery it doubts came from billing."""
    auth.may_read_events(caller)
    event = await in_transaction(engine, lambda c: repo.get_event(c, event_id))
    if event is None:
        raise EventNotFound(f"event {event_id} does not exist")
    return EventOut.of(event)
