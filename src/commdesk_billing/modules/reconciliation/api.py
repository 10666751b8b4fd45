"""Reconciliation routes: the findings (finance_admin, auditor), one with its trail, and a
finance_admin's explain / resolve with a note.

The two POSTs take an Idempotency-Key: a retried explain answers as the first did (not 409
because the first already moved it); the same key with another note is 422."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine, IdemKey
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.reconciliation import auth, service
from commdesk_billing.modules.reconciliation.model import Kind, Source, State
from commdesk_billing.modules.reconciliation.schemas import FindingOut, FindingPage, NoteIn
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import documented
from commdesk_billing.security.jwt import Principal

router = APIRouter(prefix="/v1/reconciliation", tags=["reconciliation"])

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key",
        401: "No valid bearer token",
        403: "Caller may not read or act on findings",
        404: "No such finding (`finding_not_found`)",
        409: "The finding is not in a state this move starts from (`finding_state_conflict`), "
        "or the same key in flight",
        422: "Body, id or query invalid, a bad cursor, or the key reused with another body",
    }
)
_CURSOR = "rf"


@router.get(
    "/findings",
    response_model=FindingPage,
    responses=_PROBLEMS,
    summary="Reconciliation findings, newest first (finance_admin, auditor; keyset cursor)",
)
async def list_findings(
    engine: Engine,
    caller: Caller,
    state: State | None = None,
    source: Source | None = None,
    kind: Kind | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FindingPage:
    auth.may_read(caller)
    after = decode_cursor(_CURSOR, cursor) if cursor else None

    async def work(conn: AsyncConnection) -> FindingPage:
        rows = await service.findings(
            conn, state=state, source=source, kind=kind, after=after, limit=limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return FindingPage(
            data=[FindingOut.of(f) for f in rows],
            next_cursor=encode_cursor(_CURSOR, rows[-1].created_at, rows[-1].id) if more else None,
        )

    return await in_transaction(engine, work)


@router.get(
    "/findings/{finding_id}",
    response_model=FindingOut,
    responses=_PROBLEMS,
    summary="One finding with its trail of transitions (finance_admin, auditor)",
)
async def get_finding(finding_id: uuid.UUID, engine: Engine, caller: Caller) -> FindingOut:
    auth.may_read(caller)
    found, trail = await in_transaction(engine, lambda conn: service.finding(conn, finding_id))
    return FindingOut.of(found, trail)


async def _move(
    request: Request,
    engine: Engine,
    caller: Principal,
    key: str,
    finding_id: uuid.UUID,
    body: NoteIn,
    to: State,
) -> JSONResponse:
    auth.may_act(caller)
    act = service.explain if to is State.explained else service.resolve

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        await act(conn, caller, finding_id, body.note)
        found, trail = await service.finding(conn, finding_id)
        return Answer(200, FindingOut.of(found, trail).model_dump(mode="json"))

    keyed = KeyedRequest(
        scope=caller.sub,
        key=key,
        method=request.method,
        path=request.url.path,
        body=body.model_dump(mode="json"),
    )
    return respond(await run_keyed(engine, keyed, work))


@router.post(
    "/findings/{finding_id}/explain",
    response_model=FindingOut,
    responses=_PROBLEMS,
    summary="An open finding is an expected difference, for the reason in the note "
    "(finance_admin; audited)",
)
async def explain(
    finding_id: uuid.UUID,
    body: NoteIn,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    return await _move(request, engine, caller, key, finding_id, body, State.explained)


@router.post(
    "/findings/{finding_id}/resolve",
    response_model=FindingOut,
    responses=_PROBLEMS,
    summary="An open or explained finding was dealt with, as the note says "
    "(finance_admin; audited)",
)
async def resolve(
    finding_id: uuid.UUID,
    body: NoteIn,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    return await _move(request, engine, caller, key, finding_id, body, State.resolved)
