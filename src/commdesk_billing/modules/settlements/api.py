"""Settlement routes: a run on demand (finance_admin), a payee's settlements, one settlement,
and its statement PDF.

The run takes an Idempotency-Key (a retried run answers as the first did, and settles
nothing more); a run's period is its own (`run:<id>`) and its cut-off the moment it runs.
The statement is drawn on its first request for the settlement's current status and kept in
document storage under a key of that status (write-once; a later status is a new key).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.errors import (
    PayeeNotFound,
    SettlementNotFound,
    StorageUnavailableError,
)
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.communities.auth import owns
from commdesk_billing.modules.communities.deps import Communities
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.settlements import auth, service, statement
from commdesk_billing.modules.settlements import repository as repo
from commdesk_billing.modules.settlements.model import Settlement
from commdesk_billing.modules.settlements.schemas import (
    OutcomeOut,
    RunOut,
    RunRequest,
    SettlementOut,
    SettlementPage,
)
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Principal
from commdesk_billing.security.text import sane_header
from commdesk_billing.storage import DocumentStore, ObjectConflict, ObjectNotFound, StorageError

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["settlements"])

# Each route names its own errors (problems.errors); 401, 429 and 503 `database_unavailable`
# are added for all.
_RECORD = "CommDesk's record of the payee's community cannot be used (`community_record_invalid`)"
_DIRECTORY = (
    "CommDesk's community directory (MongoDB) did not answer "
    "(`community_directory_unavailable`): repeat after Retry-After"
)

# Sent as it is by tests/contract/test_examples.py: it must be accepted. A payee that is not
# payable (or does not exist) is answered with its `waiting` reason, not refused.
_RUN_EXAMPLES = {
    "one_payee": {
        "summary": "Settle one payee now",
        "value": {"payee_id": "6f1c2b9e-4d3a-4e8f-9b7c-1a2d3e4f5a6b"},
    },
}


async def _may_read(caller: Principal, directory: CommunityDirectory, payable_code: str) -> bool:
    if auth.is_finance_reader(caller):
        return True
    community_id = auth.community_of(payable_code)
    if community_id is None:
        return False
    community = await directory.get(community_id)
    return community is not None and owns(caller, community)


async def _readable(
    engine: Engine, caller: Principal, directory: CommunityDirectory, settlement_id: uuid.UUID
) -> Settlement:
    if not auth.is_finance_reader(caller):
        auth.authorize_owner_read(caller)
    s = await in_transaction(engine, lambda c: repo.get(c, settlement_id))
    # Someone who may not read it is told it does not exist: ids are not probed.
    if s is None or not await _may_read(caller, directory, s.payable_code):
        raise SettlementNotFound(f"settlement {settlement_id} does not exist")
    return s


def _owed(s: Settlement) -> dict[str, int]:
    return {"payable_paise": s.payable_paise, "reserves_held_paise": s.reserves_held_paise}


def _taken(s: Settlement) -> dict[str, object]:
    return {
        "settlement_id": str(s.id),
        "status": s.status.value,
        "gross_paise": s.gross_paise,
        "reserve_paise": s.reserve_paise,
        "tds_paise": s.tds_paise,
        "tcs_paise": s.tcs_paise,
        "fee_paise": s.fee_paise,
        "net_paise": s.net_paise,
        "account": s.account_mask,
    }


@router.post(
    "/settlements/runs",
    status_code=201,
    response_model=RunOut,
    responses=errors(
        {
            400: "Idempotency-Key missing (`idempotency_key_required`) or malformed "
            "(`idempotency_key_invalid`)",
            403: "Only finance_admin runs settlements (`forbidden`)",
            409: "The same Idempotency-Key still running (`idempotency_key_in_use`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid, e.g. `payee_id` not a UUID (`validation_error`), or the key "
            "reused with another body (`idempotency_key_reused`)",
        }
    ),
    summary="Settle every payee payable now, or one (finance_admin)",
)
async def run(
    body: Annotated[RunRequest, Body(openapi_examples=_RUN_EXAMPLES)],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    """Settles now, outside the schedule, every payee that can be paid (or only
    `payee_id`): what each is owed up to this moment, less reserve, TDS, TCS and fees,
    becomes one settlement whose transfer is sent after the answer. The answer (201) has
    an outcome per payee looked at: the `settlement` made, or `waiting` with why nothing
    was (not payable, below the minimum, its community suspended...). Audited; the same
    Idempotency-Key answers the same run and settles nothing more."""
    auth.authorize_run(caller)

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        run_id = uuid.uuid4().hex
        at = datetime.now(UTC)
        outcomes = await service.run_in(
            conn, settings, directory, by=caller.sub, run_id=run_id, payee_id=body.payee_id, at=at
        )
        made = [o.settlement for o in outcomes if o.created and o.settlement]
        await audit.record(
            conn,
            caller,
            action="settlement.run",
            target_type="payee" if body.payee_id else "settlements",
            target_id=str(body.payee_id) if body.payee_id else run_id,
            details={
                "run_id": run_id,
                "settlements": [
                    str(o.settlement.id) for o in outcomes if o.created and o.settlement
                ],
            },
            request_id=sane_header(request.headers.get("x-request-id")),
            # Per payee settled: what it was owed at the cut-off, and what this run took.
            before={str(st.payee_id): _owed(st) for st in made} or None,
            after={str(st.payee_id): _taken(st) for st in made} or None,
        )
        out = RunOut(run_id=run_id, cut_off=at, outcomes=[OutcomeOut.of(o) for o in outcomes])
        return Answer(201, out.model_dump(mode="json"))

    keyed = KeyedRequest.of(request, caller.sub, key, body)
    return respond(await run_keyed(engine, keyed, work))


@router.get(
    "/payees/{payee_id}/settlements",
    response_model=SettlementPage,
    responses=errors(
        {
            403: "A service token: services read no settlements (`forbidden`)",
            404: "Not the caller's community's payee, or it has no settlements (`payee_not_found`)",
            422: "`limit` out of 1..200 or a malformed `payee_id` (`validation_error`), or a "
            "`cursor` this API did not give out (`invalid_cursor`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="A payee's settlements, newest first (finance_admin, auditor; its community's owners)",
)
async def payee_settlements(
    payee_id: uuid.UUID,
    engine: Engine,
    caller: Caller,
    directory: Communities,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> SettlementPage:
    """Every settlement of one payee, newest first, each with its figures (gross, reserve,
    TDS, TCS, fee, net) and `status` (`pending`, `processing`, `paid`, `failed`,
    `reversed`). Finance readers see any payee's (an empty page for a payee with none); a
    community's owners see their community's payee's only. Pages of `limit`; pass
    `next_cursor` back as `cursor`."""
    finance = auth.is_finance_reader(caller)
    if not finance:
        auth.authorize_owner_read(caller)
    before = decode_cursor("settlements", cursor) if cursor else None
    items = await in_transaction(
        engine, lambda c: repo.of_payee(c, payee_id, limit=limit + 1, before=before)
    )
    # An owner is shown its community's settlements; a payee with none, or not its own, is
    # shown as unknown (ids are not probed; who owns a payee with no settlement cannot be
    # told from here).
    if not finance and (not items or not await _may_read(caller, directory, items[0].payable_code)):
        raise PayeeNotFound(f"payee {payee_id} has no settlements to show")
    more = len(items) > limit
    items = items[:limit]
    return SettlementPage(
        data=[SettlementOut.of(s) for s in items],
        next_cursor=encode_cursor("settlements", items[-1].created_at, items[-1].id)
        if more
        else None,
    )


@router.get(
    "/settlements/{settlement_id}",
    response_model=SettlementOut,
    responses=errors(
        {
            403: "A service token: no service reads a settlement (`forbidden`)",
            404: "No such settlement, or not of the caller's community (`settlement_not_found`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="One settlement with its transfers (finance_admin, auditor; the payee's "
    "community's owners)",
)
async def get_settlement(
    settlement_id: uuid.UUID, engine: Engine, caller: Caller, directory: Communities
) -> SettlementOut:
    """A settlement's figures and where its money is: `status`, the `utr` once Cashfree
    paid it, `failure_code` and `failure_reason` when it failed, and `transfers`, each
    attempt at Cashfree with its own status. Poll it after a run until `status` is `paid`,
    `failed` or `reversed`."""
    s = await _readable(engine, caller, directory, settlement_id)
    attempts = await in_transaction(engine, lambda c: repo.attempts(c, s.id))
    return SettlementOut.of(s, attempts)


@router.get(
    "/settlements/{settlement_id}/statement",
    responses={
        **errors(
            {
                403: "A service token: services read no statements (`forbidden`)",
                404: "No such settlement, or not of the caller's community "
                "(`settlement_not_found`)",
                502: _RECORD,
                503: "Document storage did not answer (`storage_unavailable`), or the "
                "community directory did not (`community_directory_unavailable`): repeat "
                "after Retry-After",
            }
        ),
        200: {"content": {"application/pdf": {}}, "description": "The statement (PDF)"},
    },
    response_class=Response,
    summary="The settlement's statement as a PDF (finance_admin, auditor; the payee's "
    "community's owners)",
)
async def get_statement(
    settlement_id: uuid.UUID,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    directory: Communities,
) -> Response:
    """The settlement's statement for the payee's records, as a PDF download: each
    deduction from what was payable to the net paid, with the transfer's UTR once paid.
    It is drawn for the settlement's current status on first request and kept; a later
    status (paid, reversed) gets a statement of its own."""
    s = await _readable(engine, caller, directory, settlement_id)
    store: DocumentStore = request.app.state.documents
    data = await statement_of(engine, store, s, seller=settings.seller_legal_name)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="settlement-{s.id}.pdf"',
            "Cache-Control": "private, max-age=60",
        },
    )


async def statement_of(
    engine: Engine, store: DocumentStore, s: Settlement, *, seller: str
) -> bytes:
    """The stored statement of the settlement in its status, drawn and stored first if there
    is none yet (two at once: the second finds the first's)."""
    key = statement.key_of(s)
    try:
        try:
            return await store.get(key)
        except ObjectNotFound:
            pass
        attempts = await in_transaction(engine, lambda c: repo.attempts(c, s.id))
        data = statement.render(s, attempts, seller=seller)
        try:
            await store.put(key, data, "application/pdf")
        except ObjectConflict:
            return await store.get(key)
        return data
    except StorageError as exc:
        log.warning("settlement.statement.storage_error", settlement_id=str(s.id), error=str(exc))
        raise StorageUnavailableError("document storage did not answer; retry later") from exc
