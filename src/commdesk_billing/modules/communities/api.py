"""Community economy routes: spend in a community, reverse a spend, a community's spends,
earnings and fee plan.

The community is looked up in CommDesk's MongoDB (`directory`) before any money moves and
outside the idempotent unit: an unknown or suspended community, or MongoDB away, is a
problem answered now and never stored as the key's answer, so a retry after MongoDB is
back goes through.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.errors import CommunityNotFound, Forbidden, InvalidAmount, NotFound
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.communities import auth, plans, spends
from commdesk_billing.modules.communities import repository as repo
from commdesk_billing.modules.communities.deps import Communities
from commdesk_billing.modules.communities.directory import Community, CommunityDirectory
from commdesk_billing.modules.communities.model import Spend
from commdesk_billing.modules.communities.schemas import (
    EarningsOut,
    FeePlanOut,
    FeePlanRequest,
    ReversalRequest,
    SpendOut,
    SpendPage,
    SpendRequest,
)
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import documented
from commdesk_billing.security.jwt import Role, Scope
from commdesk_billing.security.roles import FINANCE_READERS, PEOPLE
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header
from commdesk_billing.telemetry.metrics import COMMUNITY_SPENDS

router = APIRouter(prefix="/v1", tags=["communities"])

CommunityId = Annotated[
    str, Path(min_length=1, max_length=64, description="CommDesk's community id")
]

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key",
        401: "No valid bearer token",
        403: "Caller may not do this",
        404: "No such community (in CommDesk's MongoDB) or spend",
        409: "Not enough credits (`insufficient_credits`), community suspended, spend "
        "already reversed, or the same key in flight",
        413: "Body too large",
        422: "Body or community id invalid, or the key reused with another body",
        502: "CommDesk's record of the community cannot be used (`community_record_invalid`)",
        503: "CommDesk's MongoDB unavailable (`community_directory_unavailable`): nothing "
        "changed, repeat after Retry-After",
    }
)


def _keyed(request: Request, caller: Caller, key: str, body: dict[str, object]) -> KeyedRequest:
    return KeyedRequest(
        scope=caller.sub, key=key, method=request.method, path=request.url.path, body=body
    )


async def _known(directory: CommunityDirectory, community_id: str) -> Community:
    community = await directory.get(community_id)
    if community is None:
        raise CommunityNotFound(f"community {community_id} is not known to CommDesk")
    return community


@router.post(
    "/communities/{community_id}/spends",
    openapi_extra=for_services(Scope.communities_spend),
    status_code=201,
    response_model=SpendOut,
    responses=_PROBLEMS,
    summary="Spend credits in a community (the platform keeps its fee)",
)
async def create_spend(
    community_id: CommunityId,
    body: SpendRequest,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    if body.credits > settings.max_credits_per_operation:
        raise InvalidAmount(
            f"at most {settings.max_credits_per_operation} credits per operation",
            max_credits=settings.max_credits_per_operation,
        )
    member = auth.spender(caller, body.user_id)
    community = await directory.require_active(community_id)

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        wallet = await ws.get_or_create_user_wallet(conn, member)
        spend = await spends.spend(
            conn,
            community=community,
            wallet=wallet,
            user_external_id=member,
            credits=body.credits,
            reason=body.reason,
            reference=body.reference,
            operation_key=op_key,
            actor=caller.sub,
            default_fee_bps=settings.community_fee_bps,
            plan_cache_s=settings.fee_plan_cache_s,
        )
        return Answer(201, SpendOut.of(spend).model_dump(mode="json"))

    answer = await run_keyed(engine, _keyed(request, caller, key, body.model_dump()), work)
    if answer.status == 201:
        COMMUNITY_SPENDS.labels("spend").inc()
    return respond(answer)


@router.get(
    "/community-spends/{spend_id}",
    response_model=SpendOut,
    responses=_PROBLEMS,
    summary="One community spend and its fee receipt",
)
async def get_spend(
    spend_id: uuid.UUID, engine: Engine, caller: Caller, directory: Communities
) -> SpendOut:
    async def read(conn: AsyncConnection) -> Spend:
        spend = await repo.get_spend(conn, spend_id)
        if spend is None:
            raise NotFound(f"community spend {spend_id} does not exist")
        return spend

    spend = await in_transaction(engine, read)
    # The member who spent it, finance readers, or the community's owners.
    if not (caller.role in PEOPLE and spend.user_external_id == caller.sub):
        auth.authorize_earnings_read(caller, await _known(directory, spend.community_id))
    return SpendOut.of(spend)


@router.post(
    "/community-spends/{spend_id}/reversal",
    status_code=201,
    response_model=SpendOut,
    responses=_PROBLEMS,
    summary="Reverse a community spend: credits back to the member, once",
)
async def reverse_spend(
    spend_id: uuid.UUID,
    body: ReversalRequest,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    async def find(conn: AsyncConnection) -> str:
        spend = await repo.get_spend(conn, spend_id)
        if spend is None:
            raise NotFound(f"community spend {spend_id} does not exist")
        return spend.community_id

    community_id = await in_transaction(engine, find)
    # finance_admin needs no MongoDB; an owner is known from it.
    community = None if caller.role is Role.finance_admin else await directory.get(community_id)
    auth.authorize_reversal(caller, community)

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        reversed_ = await spends.reverse(
            conn, spend_id=spend_id, reason=body.reason, actor=caller.sub
        )
        await audit.record(
            conn,
            caller,
            action="community.spend.reversed",
            target_type="community_spend",
            target_id=str(spend_id),
            details={"community_id": community_id, "reason": body.reason},
            request_id=sane_header(request.headers.get("x-request-id")),
        )
        return Answer(201, SpendOut.of(reversed_).model_dump(mode="json"))

    answer = await run_keyed(engine, _keyed(request, caller, key, body.model_dump()), work)
    if answer.status == 201:
        COMMUNITY_SPENDS.labels("reversal").inc()
    return respond(answer)


@router.get(
    "/communities/{community_id}/spends",
    response_model=SpendPage,
    responses=_PROBLEMS,
    summary="A community's spends, newest first, each with its fee receipt (keyset cursor)",
)
async def list_spends(
    community_id: CommunityId,
    engine: Engine,
    caller: Caller,
    directory: Communities,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SpendPage:
    auth.authorize_earnings_read(caller, await _known(directory, community_id))
    before = decode_cursor("cs", cursor) if cursor else None

    async def read(conn: AsyncConnection) -> SpendPage:
        rows = await repo.list_spends(conn, community_id, before=before, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return SpendPage(
            data=[SpendOut.of(s) for s in rows],
            next_cursor=encode_cursor("cs", rows[-1].created_at, rows[-1].id) if more else None,
        )

    return await in_transaction(engine, read)


@router.get(
    "/communities/{community_id}/earnings",
    response_model=EarningsOut,
    responses=_PROBLEMS,
    summary="What a community earned: credits, fees, and what CommDesk owes it",
)
async def earnings(
    community_id: CommunityId,
    engine: Engine,
    settings: Config,
    caller: Caller,
    directory: Communities,
) -> EarningsOut:
    auth.authorize_earnings_read(caller, await _known(directory, community_id))

    async def read(conn: AsyncConnection) -> EarningsOut:
        figures = await repo.earnings(conn, community_id)
        plan = await plans.current(conn, community_id, settings.community_fee_bps)
        return EarningsOut.of(figures, plan)

    return await in_transaction(engine, read)


@router.get(
    "/communities/{community_id}/fee-plan",
    response_model=FeePlanOut,
    responses=_PROBLEMS,
    summary="The fee plan a spend in this community uses now",
)
async def get_fee_plan(
    community_id: CommunityId,
    engine: Engine,
    settings: Config,
    caller: Caller,
    directory: Communities,
) -> FeePlanOut:
    community = await _known(directory, community_id)
    if caller.role not in FINANCE_READERS and not auth.owns(caller, community):
        raise Forbidden("only the community's owners, finance_admin and auditor see its plan")

    async def read(conn: AsyncConnection) -> FeePlanOut:
        return FeePlanOut.of(await plans.current(conn, community_id, settings.community_fee_bps))

    return await in_transaction(engine, read)


@router.put(
    "/communities/{community_id}/fee-plan",
    response_model=FeePlanOut,
    responses=_PROBLEMS,
    summary="Set a community's fee (finance_admin): a new version, history kept",
)
async def set_fee_plan(
    community_id: CommunityId,
    body: FeePlanRequest,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    directory: Communities,
) -> FeePlanOut:
    auth.authorize_fee_plan_change(caller)
    await _known(directory, community_id)

    async def write(conn: AsyncConnection) -> FeePlanOut:
        plan = await repo.add_plan(conn, community_id, body.fee_bps, body.reason, caller.sub)
        # The version this one follows, read after the insert: a change committed between a
        # read before it and the insert would otherwise be skipped in the log.
        prior = await repo.plan_before(conn, community_id, plan.version) or plans.default_plan(
            community_id, settings.community_fee_bps
        )
        await audit.record(
            conn,
            caller,
            action="community.fee_plan.changed",
            target_type="community",
            target_id=community_id,
            details={"fee_bps": body.fee_bps, "version": plan.version, "reason": body.reason},
            request_id=sane_header(request.headers.get("x-request-id")),
            before={"fee_bps": prior.fee_bps, "version": prior.version},
            after={"fee_bps": plan.fee_bps, "version": plan.version},
        )
        return FeePlanOut.of(plan)

    out = await in_transaction(engine, write)
    plans.forget(community_id)  # this process's spends use it from now on
    return out
