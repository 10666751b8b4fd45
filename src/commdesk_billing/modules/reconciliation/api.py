"""Reconciliation routes: the findings (finance_admin, auditor), one with its trail, and a
finance_admin's explain / resolve with a note.

The two POSTs take an Idempotency-Key: a retried explain answers as the first did (not 409
because the first already moved it); the same key with another note is 422."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine, IdemKey
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.reconciliation import auth, service
from commdesk_billing.modules.reconciliation.model import Kind, Source, State
from commdesk_billing.modules.reconciliation.schemas import FindingOut, FindingPage, NoteIn
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Principal

router = APIRouter(prefix="/v1/reconciliation", tags=["reconciliation"])

# Each route names its own errors (problems.errors); 401, 429 and 503 are added for all.
_NOT_READER = "Not finance_admin or auditor (`forbidden`)"
_NO_FINDING = "No such finding (`finding_not_found`)"


def _move_errors(starts_from: str) -> dict[int | str, dict[str, Any]]:
    return errors(
        {
            400: "Idempotency-Key missing (`idempotency_key_required`) or malformed "
            "(`idempotency_key_invalid`)",
            403: "Not finance_admin (`forbidden`)",
            404: _NO_FINDING,
            409: f"The finding is not {starts_from} (`finding_state_conflict`, with its "
            "`state`), or the same Idempotency-Key still running (`idempotency_key_in_use`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid: a note of fewer than 3 or more than 2000 characters "
            "(`validation_error`); or the Idempotency-Key reused with another note "
            "(`idempotency_key_reused`)",
        }
    )


# Sent as they are by tests/contract/test_examples.py (as finance_admin): each must be
# accepted.
_EXPLAIN_EXAMPLES: dict[str, Any] = {
    "fee": {
        "summary": "A difference that is expected",
        "value": {"note": "Cashfree deducted the dispute fee from this settlement (ticket 4521)"},
    }
}
_RESOLVE_EXAMPLES: dict[str, Any] = {
    "fixed": {
        "summary": "What was done about it",
        "value": {"note": "Refund re-synced from Cashfree; ledger entry corrected by FIN-88"},
    }
}
_CURSOR = "rf"


@router.get(
    "/findings",
    response_model=FindingPage,
    responses=errors(
        {
            403: _NOT_READER,
            422: "`state`, `source` or `kind` not one of theirs, or `limit` out of 1..200 "
            "(`validation_error`); a `cursor` this API did not give out (`invalid_cursor`)",
        }
    ),
    summary="Reconciliation findings, newest first (finance_admin, auditor)",
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
    """The differences the reconciler found between our books, Cashfree's payments and
    settlements, and Cashfree Payouts, each recorded once and counted each run that sees
    it again. Filter by `state` (`open` is the work to do), `source` or `kind`. Pages of
    `limit`; pass `next_cursor` back as `cursor`."""
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
    responses=errors({403: _NOT_READER, 404: _NO_FINDING}),
    summary="One finding with its trail of transitions (finance_admin, auditor)",
)
async def get_finding(finding_id: uuid.UUID, engine: Engine, caller: Caller) -> FindingOut:
    """A finding with what we hold and what the other side says (`expected_paise`,
    `actual_paise`), the ids it is about, and `transitions`: every move of its state,
    oldest first, with who made it (`reconciler` for its own) and their note: a resolved
    finding that a later run sees again is open once more."""
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

    keyed = KeyedRequest.of(request, caller.sub, key, body)
    return respond(await run_keyed(engine, keyed, work))


@router.post(
    "/findings/{finding_id}/explain",
    response_model=FindingOut,
    responses=_move_errors("open"),
    summary="Mark an open finding as an expected difference, with the reason (finance_admin)",
)
async def explain(
    finding_id: uuid.UUID,
    body: Annotated[NoteIn, Body(openapi_examples=_EXPLAIN_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Moves an `open` finding to `explained`: the difference is expected (a fee, a
    timing), for the reason in `note`; it stays on record and leaves the open count.
    Answers the finding with its trail. Audited; a retry with the same Idempotency-Key
    answers as the first call did."""
    return await _move(request, engine, caller, key, finding_id, body, State.explained)


@router.post(
    "/findings/{finding_id}/resolve",
    response_model=FindingOut,
    responses=_move_errors("open or explained"),
    summary="Mark an open or explained finding as dealt with, with what was done (finance_admin)",
)
async def resolve(
    finding_id: uuid.UUID,
    body: Annotated[NoteIn, Body(openapi_examples=_RESOLVE_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Moves an `open` or `explained` finding to `resolved`, with `note` saying what was
    done: the fix itself is made elsewhere, by its own audited route or command (the
    reconciler never fixes). Answers the finding with its trail. Audited; a retry with
    the same Idempotency-Key answers as the first call did."""
    return await _move(request, engine, caller, key, finding_id, body, State.resolved)
