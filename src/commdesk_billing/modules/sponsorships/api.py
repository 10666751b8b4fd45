"""Sponsorship routes: a sponsor opens one (and pays it on Cashfree's checkout), the
community's owner marks milestones delivered, finance or the sponsor releases them; reads
for the sponsor, the community's owners and finance.

The money POSTs take an Idempotency-Key: opening a sponsorship is keyed by the payment row
(as a credit order is: a repeat resumes or answers with the same sponsorship, as it is
now); a release is keyed like every other money POST (a repeat replays the first answer).
Marking a milestone delivered moves no money and is idempotent by itself.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.errors import CommunityNotFound, SponsorshipNotFound
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.communities.deps import Communities
from commdesk_billing.modules.communities.directory import Community, CommunityDirectory
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.sponsorships import auth, service
from commdesk_billing.modules.sponsorships.model import Milestone, Sponsorship
from commdesk_billing.modules.sponsorships.schemas import (
    MilestoneOut,
    SponsorshipOut,
    SponsorshipPage,
    SponsorshipRequest,
    SponsorshipSummary,
)
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import documented
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["sponsorships"])

Seq = Annotated[int, Path(ge=1, le=20, description="The milestone's number, from 1")]
CommunityId = Annotated[
    str, Path(min_length=1, max_length=64, description="CommDesk's community id")
]

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key",
        401: "No valid bearer token",
        403: "Caller may not do this",
        404: "No such sponsorship (`sponsorship_not_found`, also for one the caller may not "
        "see), milestone (`milestone_not_found`) or community (`community_not_found`)",
        409: "Not paid yet (`sponsorship_not_funded`), milestone not delivered "
        "(`milestone_not_delivered`) or released already (`milestone_already_released`), "
        "community suspended (`community_suspended`), or the same key in flight",
        413: "Body too large",
        422: "Body invalid, amount out of bounds (`invalid_amount`), milestones not adding up "
        "(`invalid_milestones`), or the key reused with another body",
        429: "Too many unpaid orders",
        502: "Cashfree refused the order, or CommDesk's community record is unusable",
        503: "Cashfree or CommDesk's MongoDB unavailable: repeat with the same Idempotency-Key",
    }
)


def _client(request: Request) -> CashfreeClient:
    client: CashfreeClient = request.app.state.cashfree
    return client


def _out(request: Request, s: Sponsorship, ms: list[Milestone], p: Payment) -> SponsorshipOut:
    return SponsorshipOut.of(s, ms, p, payments.checkout_url(request.app.state.settings, p))


@router.post(
    "/sponsorships",
    status_code=201,
    response_model=SponsorshipOut,
    responses=_PROBLEMS,
    summary="Sponsor a community: opens the sponsor's Cashfree order (sponsor)",
)
async def create_sponsorship(
    body: SponsorshipRequest,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    auth.authorize_create(caller)
    community = await directory.require_active(body.community_id)
    s, ms, p = await service.create(
        engine, _client(request), settings, caller, community, body, key
    )
    out = _out(request, s, ms, p)
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


async def _readable(
    conn: AsyncConnection, caller: Caller, s: Sponsorship, community: Community | None
) -> None:
    sponsor = await service.is_payer(conn, caller, s)
    if not auth.may_read(caller, sponsor=sponsor, community=community):
        # Someone else's sponsorship: its existence is not confirmed.
        raise SponsorshipNotFound(f"sponsorship {s.id} does not exist")


async def _community_of(
    engine: Engine, directory: CommunityDirectory, sponsorship_id: uuid.UUID
) -> tuple[Sponsorship, Community | None]:
    s = await in_transaction(engine, lambda conn: service.require(conn, sponsorship_id))
    return s, await directory.get(s.community_id)


@router.get(
    "/sponsorships/{sponsorship_id}",
    response_model=SponsorshipOut,
    responses=_PROBLEMS,
    summary="One sponsorship: its figures, milestones and payment",
)
async def get_sponsorship(
    sponsorship_id: uuid.UUID,
    request: Request,
    engine: Engine,
    caller: Caller,
    directory: Communities,
) -> SponsorshipOut:
    s, community = await _community_of(engine, directory, sponsorship_id)

    async def read(conn: AsyncConnection) -> SponsorshipOut:
        await _readable(conn, caller, s, community)
        return _out(request, *await service.view(conn, await service.require(conn, s.id)))

    return await in_transaction(engine, read)


@router.get(
    "/sponsorships",
    response_model=SponsorshipPage,
    responses=_PROBLEMS,
    summary="The calling sponsor's sponsorships, newest first (keyset cursor)",
)
async def list_own(
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SponsorshipPage:
    auth.authorize_own_list(caller)
    before = decode_cursor("s", cursor) if cursor else None

    async def read(conn: AsyncConnection) -> SponsorshipPage:
        rows = await service.list_own(conn, caller, limit=limit + 1, before=before)
        return _page(rows, limit)

    return await in_transaction(engine, read)


def _page(rows: list[Sponsorship], limit: int) -> SponsorshipPage:
    more = len(rows) > limit
    rows = rows[:limit]
    return SponsorshipPage(
        data=[SponsorshipSummary.of(s) for s in rows],
        next_cursor=encode_cursor("s", rows[-1].created_at, rows[-1].id) if more else None,
    )


@router.get(
    "/communities/{community_id}/sponsorships",
    response_model=SponsorshipPage,
    responses=_PROBLEMS,
    summary="A community's sponsorships, newest first (its owners, finance_admin, auditor)",
)
async def list_community(
    community_id: CommunityId,
    engine: Engine,
    caller: Caller,
    directory: Communities,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SponsorshipPage:
    community = await directory.get(community_id)
    if community is None:
        raise CommunityNotFound(f"community {community_id} is not known to CommDesk")
    auth.authorize_community_list(caller, community)
    before = decode_cursor("s", cursor) if cursor else None

    async def read(conn: AsyncConnection) -> SponsorshipPage:
        rows = await service.list_community(conn, community.id, limit=limit + 1, before=before)
        return _page(rows, limit)

    return await in_transaction(engine, read)


@router.post(
    "/sponsorships/{sponsorship_id}/milestones/{seq}/deliver",
    response_model=MilestoneOut,
    responses=_PROBLEMS,
    summary="Mark a milestone delivered (the community's owners)",
)
async def deliver(
    sponsorship_id: uuid.UUID,
    seq: Seq,
    request: Request,
    engine: Engine,
    caller: Caller,
    directory: Communities,
) -> MilestoneOut:
    s, community = await _community_of(engine, directory, sponsorship_id)

    async def write(conn: AsyncConnection) -> MilestoneOut:
        if community is None:
            await _readable(conn, caller, s, None)
            raise CommunityNotFound(f"community {s.community_id} is not known to CommDesk")
        await _readable(conn, caller, s, community)
        m = await service.deliver(conn, caller, community, s.id, seq)
        await audit.record(
            conn,
            caller,
            action="sponsorship.milestone.delivered",
            target_type="sponsorship",
            target_id=str(s.id),
            details={"milestone": seq},
            request_id=sane_header(request.headers.get("x-request-id")),
        )
        return MilestoneOut.of(m)

    return await in_transaction(engine, write)


@router.post(
    "/sponsorships/{sponsorship_id}/milestones/{seq}/release",
    response_model=MilestoneOut,
    responses=_PROBLEMS,
    summary="Release a delivered milestone to the community's payable (finance_admin or "
    "the sponsor who paid)",
)
async def release(
    sponsorship_id: uuid.UUID,
    seq: Seq,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    s, community = await _community_of(engine, directory, sponsorship_id)

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        await _readable(conn, caller, s, community)
        m = await service.release(conn, caller, s.id, seq)
        await audit.record(
            conn,
            caller,
            action="sponsorship.milestone.released",
            target_type="sponsorship",
            target_id=str(s.id),
            details={"milestone": seq, "amount_paise": m.amount_paise},
            request_id=sane_header(request.headers.get("x-request-id")),
        )
        return Answer(200, MilestoneOut.of(m).model_dump(mode="json"))

    keyed = KeyedRequest(
        scope=caller.sub, key=key, method=request.method, path=request.url.path, body={}
    )
    return respond(await run_keyed(engine, keyed, work))
