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
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["subscriptions"])

# Each route names its own errors (problems.errors); 401, 429 and 503 `database_unavailable`
# are added for all.
_KEY_MISSING = (
    "Idempotency-Key missing (`idempotency_key_required`) or malformed (`idempotency_key_invalid`)"
)
_TOO_LARGE = "Body too large (`payload_too_large`)"

# Request body examples: sent as they are by tests/contract/test_examples.py, so each must be
# accepted. The subscribe example subscribes the test's member to the credit plan made by the
# first plan example, paid from the credits the wallet examples granted.
_PLAN_EXAMPLES = {
    "credits": {
        "summary": "A monthly plan priced in credits, with a week's grace",
        "value": {
            "code": "starter",
            "name": "Starter",
            "price_credits": 30,
            "interval_unit": "month",
            "interval_count": 1,
            "grace_period_seconds": 604800,
            "dunning_offsets_seconds": [86400, 259200],
            "active": True,
        },
    },
    "inr": {
        "summary": "A monthly plan priced in rupees, charged on a mandate",
        "value": {
            "code": "pro-in",
            "name": "Pro (INR)",
            "currency": "INR",
            "price_paise": 49900,
            "interval_unit": "month",
            "grace_period_seconds": 259200,
            "dunning_offsets_seconds": [86400],
        },
    },
}
_SUBSCRIBE_EXAMPLES = {
    "credits": {
        "summary": "Subscribe to a credit plan, paid from the wallet now",
        "value": {"plan_code": "starter"},
    },
}
_CANCEL_EXAMPLES = {
    "period_end": {
        "summary": "Stop renewing; keep the service until the period ends",
        "value": {"at_period_end": True},
    },
    "now": {"summary": "End the subscription now", "value": {"at_period_end": False}},
}
_CHANGE_EXAMPLES = {
    "default": {"summary": "Move to another plan", "value": {"plan_code": "pro"}},
}


async def _keyed(
    engine: Engine, request: Request, caller: Caller, key: str, body: BaseModel, work: Work
) -> JSONResponse:
    keyed = KeyedRequest.of(request, caller.sub, key, body)
    return respond(await run_keyed(engine, keyed, work))


@router.post(
    "/subscription-plans",
    status_code=201,
    response_model=PlanOut,
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "Only finance_admin defines subscription plans (`forbidden`)",
            409: "The same Idempotency-Key still running (`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "Body invalid, e.g. a price that does not match `currency` "
            "(`validation_error`); dunning offsets not increasing or beyond the grace, or a "
            "new version changing the code's currency or interval (`invalid_amount`); or the "
            "key reused with another body (`idempotency_key_reused`)",
        }
    ),
    summary="Add a plan, or a new version of one (finance_admin)",
)
async def add_plan(
    body: Annotated[PlanRequest, Body(openapi_examples=_PLAN_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Defines what a subscription costs and how often it renews. A new `code` makes
    `version` 1; an existing code makes its next version (a price change), which new
    subscribers and renewals take from then on and which must keep the code's currency and
    interval (for another, make a new code). `active` false stops the code being sold.
    Audited; the answer (201) is the version made."""
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
    responses=errors(
        {403: "A service token without the `wallets:read` scope (`forbidden`)"},
    ),
    summary="Every plan's latest version",
)
async def list_plans(engine: Engine, caller: Caller) -> PlanList:
    """The plans on offer: each code's latest version with its price (`price_credits`, or
    `price_paise` for an INR plan), interval and grace. A plan with `active` false is no
    longer sold, though existing subscribers keep renewing on it. Subscribe with
    `POST /v1/subscriptions`."""
    found = await in_transaction(engine, plans.all_latest)
    return PlanList(data=[PlanOut.of(p) for p in found])


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionOut,
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "A service token: services have no wallet to subscribe from (`forbidden`)",
            404: "No plan has this code (`subscription_plan_not_found`)",
            409: "Too few available credits for the first period (`insufficient_credits`), "
            "the plan no longer sold (`subscription_plan_inactive`), a live subscription to "
            "it already (`subscription_exists`), or the same Idempotency-Key still running "
            "(`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "Body invalid (`validation_error`); an INR plan without the caller's own "
            "active mandate covering its price, or a `mandate_id` for a credit plan "
            "(`subscription_mandate_required`); or the key reused with another body "
            "(`idempotency_key_reused`)",
        }
    ),
    summary="Subscribe to a plan: a credit plan's first period is paid from the caller's "
    "wallet; an INR plan's is charged on `mandate_id` (pending until paid)",
)
async def subscribe(
    body: Annotated[SubscribeRequest, Body(openapi_examples=_SUBSCRIBE_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Subscribes the caller to the latest version of `plan_code`. A credit plan's first
    period is paid at once from the caller's wallet (answered `active`) or not at all; an
    INR plan's is charged on the caller's mandate `mandate_id`, and the subscription is
    `pending`, with no service, until that debit is paid (a day or more). The answer (201)
    lists the periods; the same Idempotency-Key answers the same subscription."""
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
    responses=errors(
        {
            403: "A service token: services have no subscriptions (`forbidden`)",
            422: "`limit` out of 1..100 (`validation_error`), or a `cursor` this API did not "
            "give out (`invalid_cursor`)",
        }
    ),
    summary="The caller's subscriptions, newest first (keyset cursor)",
)
async def my_subscriptions(
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> SubscriptionList:
    """Every subscription of the caller's, live or ended, newest first, without their
    periods (read one for those). Pages of `limit`; pass `next_cursor` back as `cursor`
    until it is null."""
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
    responses=errors(
        {
            403: "Neither the subscriber nor finance_admin, support or auditor (`forbidden`)",
            404: "No such subscription (`subscription_not_found`)",
        }
    ),
    summary="A subscription with its periods (the subscriber; finance_admin, support, auditor)",
)
async def get_subscription(
    subscription_id: uuid.UUID, engine: Engine, caller: Caller
) -> SubscriptionOut:
    """One subscription with every period (paid, in dunning, unpaid or void) and, for an
    INR subscription, its plan changes: `pending_change` is an upgrade waiting for its
    payment on the mandate. `status` is `pending` until an INR subscription's first period
    is paid, `past_due` while a renewal's charge is retried, and `cancelled` or `expired`
    once it has ended."""

    async def work(conn: AsyncConnection) -> SubscriptionOut:
        sub = await subs.read(conn, caller, subscription_id)
        return SubscriptionOut.of(
            sub, await subs.periods(conn, sub.id), await inr_change.of_subscription(conn, sub.id)
        )

    return await in_transaction(engine, work)


@router.post(
    "/subscriptions/{subscription_id}/cancel",
    response_model=SubscriptionOut,
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "Neither the subscriber nor finance_admin or support (`forbidden`)",
            404: "No such subscription (`subscription_not_found`)",
            409: "The subscription has ended already (`subscription_not_active`), or the "
            "same Idempotency-Key still running (`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "Body invalid (`validation_error`), or the key reused with another body "
            "(`idempotency_key_reused`)",
        }
    ),
    summary="Cancel at period end (default) or now; nothing is credited back (the "
    "subscriber; finance_admin, support)",
)
async def cancel(
    subscription_id: uuid.UUID,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    body: Annotated[CancelRequest | None, Body(openapi_examples=_CANCEL_EXAMPLES)] = None,
) -> JSONResponse:
    """Stops the subscription renewing: by default it stays `active` until the paid period
    ends (`cancel_at_period_end` true); with `at_period_end` false it ends now, a period in
    dunning is voided, and the unused part of the period is not credited back. Staff
    cancelling for a member is audited; cancelling again at period end changes nothing."""
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
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "Not the subscriber: only they change the plan (`forbidden`)",
            404: "No such subscription (`subscription_not_found`) or plan "
            "(`subscription_plan_not_found`)",
            409: "Not active or ending (`subscription_not_active`); the same plan, another "
            "currency or interval, a live subscription to it, or a renewal due "
            "(`plan_change_refused`); an upgrade awaiting its payment (`plan_change_pending`); "
            "a price above the mandate's maximum (`plan_change_needs_new_mandate`); the plan "
            "no longer sold (`subscription_plan_inactive`); too few credits for the prorated "
            "charge (`insufficient_credits`); a live subscription to the plan "
            "(`subscription_exists`); or the same Idempotency-Key still running "
            "(`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "Body invalid (`validation_error`), or the key reused with another body "
            "(`idempotency_key_reused`)",
        }
    ),
    summary="Change plan: an upgrade now with a prorated charge (an INR plan's: charged on "
    "the mandate, in effect once paid), a downgrade at renewal",
)
async def change(
    subscription_id: uuid.UUID,
    body: Annotated[ChangeRequest, Body(openapi_examples=_CHANGE_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    settings: Config,
) -> JSONResponse:
    """Moves the subscription to the latest version of `plan_code` (same currency and
    interval). To a dearer plan: now, charging the price difference for the rest of the
    period (`prorated_credits` from the wallet; an INR plan's `prorated_paise` on the
    mandate, in effect once paid, `effective_at` null meanwhile). To a plan no dearer: at
    the next renewal (`direction` `downgrade`), nothing charged or credited now."""

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
