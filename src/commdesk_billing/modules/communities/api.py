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

from fastapi import APIRouter, Body, Path, Query, Request
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
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Role, Scope
from commdesk_billing.security.roles import FINANCE_READERS, PEOPLE
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header
from commdesk_billing.telemetry.metrics import COMMUNITY_SPENDS

router = APIRouter(prefix="/v1", tags=["communities"])

CommunityId = Annotated[
    str, Path(min_length=1, max_length=64, description="CommDesk's community id")
]

# Each route names its own errors (problems.errors); 401, 429 and 503
# `database_unavailable` are added for all. The community is read from CommDesk's MongoDB:
_BAD_ID = (
    "a community id over 64 characters (`validation_error`) or one no community can have "
    "(`invalid_community_id`)"
)
_RECORD = "CommDesk's record of the community is unusable (`community_record_invalid`)"
_DIRECTORY = (
    "CommDesk's MongoDB did not answer (`community_directory_unavailable`): nothing "
    "changed, repeat after Retry-After"
)
_KEY_400 = (
    "Idempotency-Key missing (`idempotency_key_required`) or malformed (`idempotency_key_invalid`)"
)
_TOO_LARGE = "Body too large (`payload_too_large`)"
_NO_COMMUNITY = "No such community in CommDesk's MongoDB (`community_not_found`)"

# Request body examples: sent as they are by tests/contract/test_examples.py, so each must
# be accepted.
_SPEND_EXAMPLES = {
    "ticket": {
        "summary": "A member buys an event ticket with their credits",
        "value": {"credits": 100, "reason": "ticket", "reference": "event-42"},
    }
}
_REVERSAL_EXAMPLES = {
    "cancelled": {
        "summary": "The event was cancelled",
        "value": {"reason": "event-42 cancelled by the organiser"},
    }
}
_FEE_PLAN_EXAMPLES = {
    "launch": {
        "summary": "A lower fee for a launch partner",
        "value": {"fee_bps": 550, "reason": "launch partner rate, agreed 2026-12-01"},
    }
}


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
    responses=errors(
        {
            400: _KEY_400,
            403: "A member naming another member's `user_id`, or a service without "
            "communities:spend or without `user_id` (`forbidden`)",
            404: _NO_COMMUNITY,
            409: "Fewer available credits than asked (`insufficient_credits`), the community "
            "suspended (`community_suspended`), or the same Idempotency-Key still running "
            "(`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "Body invalid (`validation_error`), more credits than one operation may move "
            f"(`invalid_amount`), {_BAD_ID}, or the key reused with another body "
            "(`idempotency_key_reused`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="Spend credits in a community (the platform keeps its fee)",
)
async def create_spend(
    community_id: CommunityId,
    body: Annotated[SpendRequest, Body(openapi_examples=_SPEND_EXAMPLES)],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    """Takes `credits` from the member's wallet (oldest lot first) into an active
    community, splitting them between the community and the platform's fee by the
    community's fee plan; the answer is the spend with its fee receipt and `transaction_id`,
    the member's statement line. A member spends their own credits; a service with
    `communities:spend` names the member in `user_id`. The same Idempotency-Key and body
    answer the same spend again, without a second debit."""
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

    answer = await run_keyed(
        engine, KeyedRequest.of(request, caller.sub, key, body.model_dump()), work
    )
    if answer.status == 201:
        COMMUNITY_SPENDS.labels("spend").inc()
    return respond(answer)


@router.get(
    "/community-spends/{spend_id}",
    response_model=SpendOut,
    responses=errors(
        {
            403: "Neither the member who spent, the community's owners, finance_admin nor "
            "auditor (`forbidden`)",
            404: "No such spend (`not_found`), or its community is gone from CommDesk's "
            "MongoDB (`community_not_found`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="One community spend and its fee receipt",
)
async def get_spend(
    spend_id: uuid.UUID, engine: Engine, caller: Caller, directory: Communities
) -> SpendOut:
    """A spend by its id: what the member paid, the platform's fee and the community's part
    in credits and in rupees, and `reversed_at` once it was reversed. The member who spent
    reads it without MongoDB being asked; the community's owners, finance_admin and auditor
    read it too."""

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
    responses=errors(
        {
            400: _KEY_400,
            403: "Neither finance_admin nor one of the community's owners (`forbidden`)",
            404: "No such spend (`not_found`)",
            409: "The spend was reversed already (`spend_already_reversed`, with "
            "`reversed_at`), or the same Idempotency-Key still running "
            "(`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "Body invalid (`validation_error`) or the key reused with another body "
            "(`idempotency_key_reused`)",
            502: f"{_RECORD} (an owner's request)",
            503: f"{_DIRECTORY} (an owner's request)",
        }
    ),
    summary="Reverse a community spend: credits back to the member, once (the community's "
    "owners, finance_admin)",
)
async def reverse_spend(
    spend_id: uuid.UUID,
    body: Annotated[ReversalRequest, Body(openapi_examples=_REVERSAL_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    """Gives the spend's credits back to the member as a new lot (with the cost basis and
    the latest expiry they were spent with) and takes back the community's part and the
    platform's fee; the answer is the spend with `reversed_at` set. A spend is reversed at
    most once; the change is written to the audit log."""

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

    answer = await run_keyed(
        engine, KeyedRequest.of(request, caller.sub, key, body.model_dump()), work
    )
    if answer.status == 201:
        COMMUNITY_SPENDS.labels("reversal").inc()
    return respond(answer)


@router.get(
    "/communities/{community_id}/spends",
    response_model=SpendPage,
    responses=errors(
        {
            403: "Not one of the community's owners, finance_admin or auditor (`forbidden`)",
            404: _NO_COMMUNITY,
            422: "`limit` out of 1..200 (`validation_error`), a `cursor` this API did not give "
            f"out (`invalid_cursor`), or {_BAD_ID}",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="A community's spends, newest first, each with its fee receipt (its owners, "
    "finance_admin, auditor)",
)
async def list_spends(
    community_id: CommunityId,
    engine: Engine,
    caller: Caller,
    directory: Communities,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SpendPage:
    """Every spend into the community, reversed ones included (`reversed_at`), with the
    receipt its owners reconcile against. Pages of `limit`; pass `next_cursor` back as
    `cursor` for the next page, until it is null."""
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
    responses=errors(
        {
            403: "Only the community's owners, finance_admin and auditor see its earnings "
            "(`forbidden`)",
            404: _NO_COMMUNITY,
            422: _BAD_ID.capitalize(),
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="What a community earned: credits, fees, and what CommDesk owes it (its owners, "
    "finance_admin, auditor)",
)
async def earnings(
    community_id: CommunityId,
    engine: Engine,
    settings: Config,
    caller: Caller,
    directory: Communities,
) -> EarningsOut:
    """The community's totals over all its spends, net of reversals: credits earned after
    the platform's fee, the fee kept, and `payable_paise`, the rupees CommDesk owes the
    community before payouts (promotional credits carry none). `fee_plan` is the plan new
    spends use now."""
    auth.authorize_earnings_read(caller, await _known(directory, community_id))

    async def read(conn: AsyncConnection) -> EarningsOut:
        figures = await repo.earnings(conn, community_id)
        plan = await plans.current(conn, community_id, settings.community_fee_bps)
        return EarningsOut.of(figures, plan)

    return await in_transaction(engine, read)


@router.get(
    "/communities/{community_id}/fee-plan",
    response_model=FeePlanOut,
    responses=errors(
        {
            403: "Only the community's owners, finance_admin and auditor see its fee plan "
            "(`forbidden`)",
            404: _NO_COMMUNITY,
            422: _BAD_ID.capitalize(),
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="The fee plan a spend in this community uses now (its owners, finance_admin, auditor)",
)
async def get_fee_plan(
    community_id: CommunityId,
    engine: Engine,
    settings: Config,
    caller: Caller,
    directory: Communities,
) -> FeePlanOut:
    """The platform's fee on the community's spends as it stands: its latest plan, or
    version 0, the configured default, when finance never set one. Spends already made
    keep the rate and version they recorded."""
    community = await _known(directory, community_id)
    if caller.role not in FINANCE_READERS and not auth.owns(caller, community):
        raise Forbidden("only the community's owners, finance_admin and auditor see its plan")

    async def read(conn: AsyncConnection) -> FeePlanOut:
        return FeePlanOut.of(await plans.current(conn, community_id, settings.community_fee_bps))

    return await in_transaction(engine, read)


@router.put(
    "/communities/{community_id}/fee-plan",
    response_model=FeePlanOut,
    responses=errors(
        {
            403: "Only finance_admin sets a community's fee (`forbidden`)",
            404: _NO_COMMUNITY,
            413: _TOO_LARGE,
            422: "Body invalid (`validation_error`: `fee_bps` out of 0..5000, no `reason`), "
            f"or {_BAD_ID}",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="Set a community's fee, a new version with history kept (finance_admin)",
)
async def set_fee_plan(
    community_id: CommunityId,
    body: Annotated[FeePlanRequest, Body(openapi_examples=_FEE_PLAN_EXAMPLES)],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    directory: Communities,
) -> FeePlanOut:
    """Makes `fee_bps` the community's fee from now on, as the plan's next version (every
    version is kept); the answer is the new version. Spends already made keep the version
    they used, and other API processes use the new one within `BILLING_FEE_PLAN_CACHE_S`.
    The change, with the fee before and after, is written to the audit log."""
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
