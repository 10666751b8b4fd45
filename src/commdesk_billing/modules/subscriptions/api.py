"""Subscription routes: parse, authorize, call the service, shape the answer.

Plans are finance's (`POST /v1/subscription-plans`, finance_admin; read by anyone signed
in). Subscribing, cancelling and changing plan take an Idempotency-Key (`run_keyed`): the
answer to a key is stored with the effect, in one transaction.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, Work, respond, run_keyed
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.subscriptions import auth, inr_change, plans
from commdesk_billing.modules.subscriptions import service as subs
from commdesk_billing.modules.subscriptions.schemas import (
    CancelRequest,
    ChangeOut,
    ChangeRequest,
    PlanList,
    PlanOut,
    PlanRequest,
    SubscribeRequest,
    SubscriptionList,
    SubscriptionOut,
)
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import documented
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["subscriptions"])

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key",
        401: "No valid bearer token",
        403: "Caller may not do this",
        404: "No such plan or subscription",
        409: "Not enough credits, plan not sold, subscription not active, "
        "already subscribed, a plan change pending or needing a new mandate, or the same "
        "key in flight",
        422: "Body invalid, the key reused with another body, or an INR plan without the "
        "caller's own active mandate covering its price",
    }
)


async def _keyed(
    engine: Engine, request: Request, caller: Caller, key: str, body: BaseModel, work: Work
) -> JSONResponse:
    keyed = KeyedRequest(
        scope=caller.sub,
        key=key,
        method=request.method,
        path=request.url.path,
        body=body.model_dump(mode="json"),
    )
    return respond(await run_keyed(engine, keyed, work))


@router.post(
    "/subscription-plans",
    status_code=201,
    response_model=PlanOut,
    responses=_PROBLEMS,
    summary="Add a plan, or a new version of one (finance_admin)",
)
async def add_plan(
    body: PlanRequest, request: Request, engine: Engine, caller: Caller, key: IdemKey
) -> JSONResponse:
    auth.authorize_plan_admin(caller)

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        plan = await plans.add_version(
            conn,
            code=body.code,
            name=body.name,
            currency=body.currency,
            price_credits=body.price_credits,
            price_paise=body.price_paise,
            interval_unit=body.interval_unit,
            interval_count=body.interval_count,
            grace_period_s=body.grace_period_seconds,
            dunning_offsets_s=list(body.dunning_offsets_seconds),
            active=body.active,
            created_by=caller.sub,
        )
        await audit.record(
            conn,
            caller,
            action="subscription.plan.version",
            target_type="subscription_plan",
            target_id=f"{plan.code}:{plan.version}",
            details=body.model_dump(mode="json"),
            request_id=sane_header(request.headers.get("x-request-id")),
        )
        return Answer(201, PlanOut.of(plan).model_dump(mode="json"))

    return await _keyed(engine, request, caller, key, body, work)


@router.get(
    "/subscription-plans",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=PlanList,
    responses=_PROBLEMS,
    summary="Every plan's latest version",
)
async def list_plans(engine: Engine, caller: Caller) -> PlanList:
    found = await in_transaction(engine, plans.all_latest)
    return PlanList(data=[PlanOut.of(p) for p in found])


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionOut,
    responses=_PROBLEMS,
    summary="Subscribe to a plan: a credit plan's first period is paid from the caller's "
    "wallet; an INR plan's is charged on `mandate_id` (pending until paid)",
)
async def subscribe(
    body: SubscribeRequest, request: Request, engine: Engine, caller: Caller, key: IdemKey
) -> JSONResponse:
    auth.authorize_subscribe(caller)

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        sub = await subs.subscribe(
            conn, caller, plan_code=body.plan_code, operation_key=op_key, mandate_id=body.mandate_id
        )
        out = SubscriptionOut.of(sub, await subs.periods(conn, sub.id))
        return Answer(201, out.model_dump(mode="json"))

    return await _keyed(engine, request, caller, key, body, work)


@router.get(
    "/subscriptions",
    response_model=SubscriptionList,
    responses=_PROBLEMS,
    summary="The caller's subscriptions, newest first (keyset cursor)",
)
async def my_subscriptions(
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> SubscriptionList:
    before = decode_cursor("sub", cursor) if cursor else None
    found = await in_transaction(engine, lambda c: subs.mine(c, caller, limit + 1, before))
    page = found[:limit]
    more = len(found) > limit
    return SubscriptionList(
        data=[SubscriptionOut.of(s) for s in page],
        next_cursor=encode_cursor("sub", page[-1].created_at, page[-1].id) if more else None,
    )


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionOut,
    responses=_PROBLEMS,
    summary="A subscription with its periods",
)
async def get_subscription(
    subscription_id: uuid.UUID, engine: Engine, caller: Caller
) -> SubscriptionOut:
    async def work(conn: AsyncConnection) -> SubscriptionOut:
        sub = await subs.read(conn, caller, subscription_id)
        return SubscriptionOut.of(
            sub, await subs.periods(conn, sub.id), await inr_change.of_subscription(conn, sub.id)
        )

    return await in_transaction(engine, work)


@router.post(
    "/subscriptions/{subscription_id}/cancel",
    response_model=SubscriptionOut,
    responses=_PROBLEMS,
    summary="Cancel at period end (default) or now; nothing is credited back",
)
async def cancel(
    subscription_id: uuid.UUID,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> JSONResponse:
    body = body or CancelRequest()

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        sub = await subs.cancel(conn, caller, subscription_id, at_period_end=body.at_period_end)
        if not auth.owns(caller, sub):  # staff cancelling for a member
            await audit.record(
                conn,
                caller,
                action="subscription.cancel",
                target_type="subscription",
                target_id=str(sub.id),
                details={"at_period_end": body.at_period_end},
                request_id=sane_header(request.headers.get("x-request-id")),
            )
        return Answer(200, SubscriptionOut.of(sub).model_dump(mode="json"))

    return await _keyed(engine, request, caller, key, body, work)


@router.post(
    "/subscriptions/{subscription_id}/change",
    response_model=ChangeOut,
    responses=_PROBLEMS,
    summary="Change plan: an upgrade now with a prorated charge (an INR plan's: charged on "
    "the mandate, in effect once paid), a downgrade at renewal",
)
async def change(
    subscription_id: uuid.UUID,
    body: ChangeRequest,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    settings: Config,
) -> JSONResponse:
    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        done = await subs.change_plan(
            conn,
            caller,
            subscription_id,
            plan_code=body.plan_code,
            operation_key=op_key,
            inr_lead_s=settings.subscription_inr_lead_s,
        )
        out = ChangeOut(
            subscription=SubscriptionOut.of(done.subscription, pending=done.pending),
            direction=done.direction,
            prorated_credits=done.prorated_credits,
            prorated_paise=done.prorated_paise,
            effective_at=done.effective_at,
        )
        return Answer(200, out.model_dump(mode="json"))

    return await _keyed(engine, request, caller, key, body, work)
