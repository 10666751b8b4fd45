"""Fraud routes: the review queue, a member's risk profile, the allow and deny lists.
(The decision on a review moves money — a release or a refund — and is served by
`modules/reviews`, which may call the refunds module.)"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine
from commdesk_billing.modules.fraud import auth, lists, profiles, reviews
from commdesk_billing.modules.fraud.schemas import (
    AssessmentOut,
    FraudEventOut,
    ListEntryIn,
    ListEntryOut,
    ListPage,
    ProfileOut,
    ReviewOut,
    ReviewPage,
    ReviewStatus,
)
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import errors
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1/fraud", tags=["fraud"])

# Each route names its own errors (problems.errors); 401, 429 and 503 are added for all.
_NOT_READER = "Not finance_admin or support (`forbidden`)"
_PAGE_INVALID = (
    "`limit` out of 1..200 (`validation_error`), or a `cursor` this API did not give out "
    "(`invalid_cursor`)"
)

# Sent as it is by tests/contract/test_examples.py (as finance_admin): it must be accepted.
_ENTRY_EXAMPLES: dict[str, Any] = {
    "deny_vpa": {
        "summary": "Block a UPI VPA seen in chargebacks",
        "value": {
            "list": "deny",
            "kind": "vpa",
            "value": "mule.account@okaxis",
            "reason": "three chargebacks from this VPA in a week",
        },
    },
}


@router.get(
    "/reviews",
    response_model=ReviewPage,
    responses=errors(
        {
            403: _NOT_READER,
            422: "`status` not pending, released or refunded, or `limit` out of 1..200 "
            "(`validation_error`); a `cursor` this API did not give out (`invalid_cursor`)",
        }
    ),
    summary="The fraud review queue, newest first (finance_admin, support)",
)
async def list_reviews(
    engine: Engine,
    caller: Caller,
    status: ReviewStatus | None = "pending",
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReviewPage:
    """Payments whose credits fraud scoring is holding until a person decides, with the
    score and the rules that fired; `status` defaults to `pending` (the work to do).
    Decide one at `POST /v1/fraud/reviews/{review_id}/decision`; read the member's
    history first at `/v1/fraud/profiles/{user_id}`. Pages of `limit`; pass `next_cursor`
    back as `cursor`."""
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
    responses=errors(
        {
            403: _NOT_READER,
            422: "`user_id` is not a UUID: billing's user id, not CommDesk's (`validation_error`)",
        }
    ),
    summary="A member's risk profile: scores, rules fired, events, reviews (finance_admin, "
    "support)",
)
async def get_profile(user_id: uuid.UUID, engine: Engine, caller: Caller) -> ProfileOut:
    """Why fraud scoring treated a member as it did: their latest scorings with the rules
    that fired, the fraud events recorded, their reviews and decisions, and whether their
    user id is on the allow or deny list. An unknown id answers an empty profile, not a
    404. Support reads it to explain a blocked payment to the member."""
    auth.may_read(caller)
    found = await in_transaction(engine, lambda conn: profiles.profile(conn, user_id))
    return ProfileOut(
        user_id=found["user_id"],
        assessments=[AssessmentOut(**a) for a in found["assessments"]],
        events=[FraudEventOut(**e) for e in found["events"]],
        reviews=[ReviewOut.of(r) for r in found["reviews"]],
        rules_fired=found["rules_fired"],
        blocked=found["blocked"],
        highest_score=found["highest_score"],
        listed=found["listed"],
    )


@router.get(
    "/lists",
    response_model=ListPage,
    responses=errors({403: _NOT_READER, 422: _PAGE_INVALID}),
    summary="Allow and deny list entries, newest first (finance_admin, support)",
)
async def list_entries(
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ListPage:
    """Every entry of both lists, newest first: an allow-listed user, device or IP is not
    scored, a deny-listed one (or UPI VPA) is blocked. Each says who added it and why.
    Pages of `limit`; pass `next_cursor` back as `cursor`."""
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
    responses={
        200: {"model": ListEntryOut, "description": "The entry was on this list already"},
        **errors(
            {
                403: "Not finance_admin (`forbidden`)",
                409: "The value is on the other list (`fraud_list_conflict`): remove it "
                "there first",
                413: "Body too large (`payload_too_large`)",
                422: "Body invalid (`validation_error`), or a user entry that is not a "
                "UUID or an ip entry that is not one address (`invalid_list_entry`)",
            }
        ),
    },
    summary="Put a user id, device, IP or UPI VPA on the allow or deny list (finance_admin)",
)
async def add_entry(
    body: Annotated[ListEntryIn, Body(openapi_examples=_ENTRY_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
) -> JSONResponse:
    """Adds the entry (201), in force for the next scoring: allow skips the rules for that
    user, device or IP; deny blocks it. A user is billing's user id; an IP and a VPA are
    normalised (a VPA lower-cased). The same entry again answers the one there (200);
    the value on the other list is refused. Audited, with the reason."""
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
    responses=errors(
        {
            403: "Not finance_admin (`forbidden`)",
            404: "No such list entry, or removed already (`not_found`)",
        }
    ),
    summary="Take an entry off its list (finance_admin)",
)
async def remove_entry(
    entry_id: uuid.UUID, request: Request, engine: Engine, caller: Caller
) -> Response:
    """Removes the entry (204): from the next scoring on, its value is scored by the rules
    again. To move a value to the other list, remove it here and add it there. Audited,
    with the entry's reason."""
    auth.may_decide(caller)
    await in_transaction(
        engine,
        lambda conn: lists.remove(
            conn, caller, entry_id, request_id=sane_header(request.headers.get("x-request-id"))
        ),
    )
    return Response(status_code=204)
