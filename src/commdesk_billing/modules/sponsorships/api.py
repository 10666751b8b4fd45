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

from fastapi import APIRouter, Body, Path, Query, Request
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
from commdesk_billing.problems import errors
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["sponsorships"])

Seq = Annotated[int, Path(ge=1, le=20, description="The milestone's number, from 1")]
CommunityId = Annotated[
    str, Path(min_length=1, max_length=64, description="CommDesk's community id")
]

# Each route names its own errors (problems.errors); 401, 429 (rate limits) and 503
# `database_unavailable` are added for all.
_RECORD = "CommDesk's record of the community is unusable (`community_record_invalid`)"
_DIRECTORY = (
    "CommDesk's MongoDB did not answer (`community_directory_unavailable`): nothing "
    "changed, repeat after Retry-After"
)
_NOT_VISIBLE = "No such sponsorship, or one the caller may not see (`sponsorship_not_found`)"
_PAGE_422 = (
    "`limit` out of 1..200 (`validation_error`), or a `cursor` this API did not give out "
    "(`invalid_cursor`)"
)

# Sent as they are by tests/contract/test_examples.py (with a sponsor's token, the
# community written to the run's MongoDB): each must be accepted.
_SPONSORSHIP_EXAMPLES = {
    "milestones": {
        "summary": "₹5,000 for a tournament, paid out in two milestones",
        "value": {
            "community_id": "chess-club",
            "amount_paise": 500000,
            "purpose": "Winter rapid tournament 2026",
            "milestones": [
                {"title": "Venue booked", "amount_paise": 200000},
                {"title": "Tournament held", "amount_paise": 300000},
            ],
            "customer_phone": "9876543210",
            "customer_email": "sponsorships@acme.example",
        },
    },
    "single": {
        "summary": "₹1,000 in one milestone (the whole amount)",
        "value": {
            "community_id": "chess-club",
            "amount_paise": 100000,
            "purpose": "Prizes for the junior section",
            "customer_phone": "9876543210",
        },
    },
}


def _client(request: Request) -> CashfreeClient:
    client: CashfreeClient = request.app.state.cashfree
    return client


def _out(request: Request, s: Sponsorship, ms: list[Milestone], p: Payment) -> SponsorshipOut:
    return SponsorshipOut.of(s, ms, p, payments.checkout_url(request.app.state.settings, p))


@router.post(
    "/sponsorships",
    status_code=201,
    response_model=SponsorshipOut,
    responses=errors(
        {
            400: "Idempotency-Key missing (`idempotency_key_required`) or malformed "
            "(`idempotency_key_invalid`)",
            403: "Not a sponsor's token (`forbidden`)",
            404: "No such community in CommDesk's MongoDB (`community_not_found`)",
            409: "The community is suspended (`community_suspended`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid (`validation_error`); an amount outside the configured bounds "
            "(`invalid_amount`, with `min_paise` and `max_paise`); milestones not adding up "
            "to it (`invalid_milestones`); a `buyer_state` other than the GSTIN's on the "
            "sponsor's billing profile (`buyer_state_conflicts_gstin`); or the key reused "
            "with another body (`idempotency_key_reused`)",
            429: "Too many unpaid orders open at once (`too_many_open_orders`)",
            502: f"Cashfree refused the order (`gateway_rejected`), or {_RECORD}",
            503: "Cashfree did not answer (`gateway_unavailable`): repeat with the same "
            f"Idempotency-Key; or {_DIRECTORY}",
        }
    ),
    summary="Sponsor a community: opens the sponsor's Cashfree order (sponsor)",
)
async def create_sponsorship(
    body: Annotated[SponsorshipRequest, Body(openapi_examples=_SPONSORSHIP_EXAMPLES)],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    """Opens a sponsorship of an active community and the sponsor's Cashfree order for
    `total_paise` (the amount, plus the platform's fee and the GST on it): pay it on
    Cashfree's checkout from `payment.payment_session_id` (or `payment.checkout_url`), then
    poll `/v1/sponsorships/{sponsorship_id}` until `status` is `funded`. On the `escrow`
    path the money is held and released per milestone; on the `split` path Cashfree settles
    the community's part to its Easy Split vendor. The same Idempotency-Key and body answer
    the same sponsorship (resuming its order if Cashfree did not answer the first time)."""
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
    responses=errors(
        {
            403: "A service token (`forbidden`)",
            404: _NOT_VISIBLE,
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="One sponsorship: its figures, milestones and payment",
)
async def get_sponsorship(
    sponsorship_id: uuid.UUID,
    request: Request,
    engine: Engine,
    caller: Caller,
    directory: Communities,
) -> SponsorshipOut:
    """A sponsorship with its fee and GST figures, what is in escrow, released and
    refunded, each milestone's status and the sponsor's payment. The sponsor who paid, the
    community's owners, finance_admin and auditor read it; anyone else is answered 404, as
    if it did not exist."""
    s, community = await _community_of(engine, directory, sponsorship_id)

    async def read(conn: AsyncConnection) -> SponsorshipOut:
        await _readable(conn, caller, s, community)
        return _out(request, *await service.view(conn, await service.require(conn, s.id)))

    return await in_transaction(engine, read)


@router.get(
    "/sponsorships",
    response_model=SponsorshipPage,
    responses=errors(
        {
            403: "Not a sponsor's token (`forbidden`)",
            422: _PAGE_422,
        }
    ),
    summary="The calling sponsor's sponsorships, newest first (sponsor)",
)
async def list_own(
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SponsorshipPage:
    """Every sponsorship the calling sponsor opened, paid or not, in short form (read one
    for its milestones and payment). Pages of `limit`; pass `next_cursor` back as `cursor`
    for the next page, until it is null."""
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
    responses=errors(
        {
            403: "Not one of the community's owners, finance_admin or auditor (`forbidden`)",
            404: "No such community in CommDesk's MongoDB (`community_not_found`)",
            422: f"{_PAGE_422[:-1]}; a community id over 64 characters (`validation_error`) "
            "or one no community can have (`invalid_community_id`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
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
    """Every sponsorship of the community, from every sponsor, in short form: what its
    owners have been promised and whether it was paid. Pages of `limit`; pass
    `next_cursor` back as `cursor`."""
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
    responses=errors(
        {
            403: "The sponsor, finance_admin, auditor or a service: only the community's "
            "owners mark a milestone delivered (`forbidden`)",
            404: f"{_NOT_VISIBLE}, no milestone `seq` (`milestone_not_found`), or its "
            "community gone from CommDesk's MongoDB (`community_not_found`)",
            409: "Not paid yet (`sponsorship_not_funded`), or the milestone's money is being "
            "or was refunded (`milestone_refunded`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
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
    """The community's owners say milestone `seq` is done, so the sponsor or finance may
    release its money; the answer is the milestone as `delivered`. Marking it again changes
    nothing and answers it as it is; no money moves here. Written to the audit log."""
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
    responses=errors(
        {
            400: "Idempotency-Key missing (`idempotency_key_required`) or malformed "
            "(`idempotency_key_invalid`)",
            403: "The community's owners, the auditor or a service: only finance_admin or the "
            "sponsor who paid releases (`forbidden`)",
            404: f"{_NOT_VISIBLE}, or no milestone `seq` (`milestone_not_found`)",
            409: "A split sponsorship, settled by Cashfree (`sponsorship_split_no_release`); "
            "not paid yet (`sponsorship_not_funded`); the milestone released already "
            "(`milestone_already_released`), refunded (`milestone_refunded`) or not "
            "delivered (`milestone_not_delivered`); or the same Idempotency-Key still "
            "running (`idempotency_key_in_use`)",
            422: "`seq` out of 1..20 (`validation_error`), or the key used before for another "
            "request (`idempotency_key_reused`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="Release a delivered milestone to the community's payable (the sponsor who "
    "paid, finance_admin)",
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
    """Moves a delivered milestone's amount out of escrow into the community's payable
    (what CommDesk owes it, paid out by settlements), once; the answer is the milestone as
    `released`. The same Idempotency-Key answers the first result again. Written to the
    audit log with the amount."""
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

    keyed = KeyedRequest.of(request, caller.sub, key, {})
    return respond(await run_keyed(engine, keyed, work))
