"""Fraud routes: the review queue, a member's risk profile, the allow and deny lists.
(The decision on a review moves money — a release or a refund — and is served by
`modules/reviews`, which may call the refunds module.)"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine
from commdesk_billing.modules.fraud import auth, lists, profiles, reviews
from commdesk_billing.modules.fraud.schemas import (
    AssessmentOut,
    EventOut,
    ListEntryIn,
    ListEntryOut,
    ListPage,
    ProfileOut,
    ReviewOut,
    ReviewPage,
)
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import documented
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1/fraud", tags=["fraud"])

_PROBLEMS = documented(
    {
        401: "No valid bearer token",
        403: "Caller may not read or change fraud decisions",
        404: "No such list entry",
        409: "The value is on the other list (`fraud_list_conflict`)",
        422: "Body or query invalid, or a bad cursor",
    }
)


@router.get(
    "/reviews",
    response_model=ReviewPage,
    responses=_PROBLEMS,
    summary="The review queue, newest first (finance_admin, support; keyset cursor)",
)
async def list_reviews(
    engine: Engine,
    caller: Caller,
    status: Literal["pending", "released", "refunded"] | None = "pending",
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReviewPage:
    auth.may_read(caller)
    after = decode_cursor("fr", cursor) if cursor else None

    async def work(conn: AsyncConnection) -> ReviewPage:
        rows = await reviews.list_reviews(
            conn, status=status, user_id=None, after=after, limit=limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return ReviewPage(
            data=[ReviewOut.of(r) for r in rows],
            next_cursor=encode_cursor("fr", rows[-1]["created_at"], rows[-1]["id"])
            if more
            else None,
        )

    return await in_transaction(engine, work)


@router.get(
    "/profiles/{user_id}",
    response_model=ProfileOut,
    responses=_PROBLEMS,
    summary="A member's risk profile: scores, rules fired, events, reviews (finance, support)",
)
async def get_profile(user_id: uuid.UUID, engine: Engine, caller: Caller) -> ProfileOut:
    auth.may_read(caller)
    found = await in_transaction(engine, lambda conn: profiles.profile(conn, user_id))
    return ProfileOut(
        user_id=found["user_id"],
        assessments=[AssessmentOut(**a) for a in found["assessments"]],
        events=[EventOut(**e) for e in found["events"]],
        reviews=[ReviewOut.of(r) for r in found["reviews"]],
        rules_fired=found["rules_fired"],
        blocked=found["blocked"],
        highest_score=found["highest_score"],
        listed=found["listed"],
    )


@router.get(
    "/lists",
    response_model=ListPage,
    responses=_PROBLEMS,
    summary="Allow and deny list entries, newest first (finance_admin, support)",
)
async def list_entries(
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ListPage:
    auth.may_read(caller)
    after = decode_cursor("fl", cursor) if cursor else None

    async def work(conn: AsyncConnection) -> ListPage:
        rows = await lists.entries(conn, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return ListPage(
            data=[ListEntryOut(**r) for r in rows],
            next_cursor=encode_cursor("fl", rows[-1]["created_at"], rows[-1]["id"])
            if more
            else None,
        )

    return await in_transaction(engine, work)


@router.post(
    "/lists",
    status_code=201,
    response_model=ListEntryOut,
    responses=_PROBLEMS,
    summary="Put a user id, device, IP or UPI VPA on the allow or deny list (finance_admin; "
    "the same entry again answers 200)",
)
async def add_entry(
    body: ListEntryIn, request: Request, engine: Engine, caller: Caller
) -> JSONResponse:
    auth.may_decide(caller)
    entry, made = await in_transaction(
        engine,
        lambda conn: lists.add(
            conn,
            caller,
            list_name=body.list,
            kind=body.kind,
            value=body.value,
            reason=body.reason,
            request_id=sane_header(request.headers.get("x-request-id")),
        ),
    )
    return JSONResponse(
        ListEntryOut(**entry).model_dump(mode="json"), status_code=201 if made else 200
    )


@router.delete(
    "/lists/{entry_id}",
    status_code=204,
    responses=_PROBLEMS,
    summary="Take an entry off its list (finance_admin)",
)
async def remove_entry(
    entry_id: uuid.UUID, request: Request, engine: Engine, caller: Caller
) -> Response:
    auth.may_decide(caller)
    await in_transaction(
        engine,
        lambda conn: lists.remove(
            conn, caller, entry_id, request_id=sane_header(request.headers.get("x-request-id"))
        ),
    )
    return Response(status_code=204)
