"""Payee routes: create a payee, read and list payees, set and read its payout account,
suspend and reactivate it.

POSTs and the PUT take an Idempotency-Key (a retry answers as the first did). A community
is looked up in CommDesk's MongoDB before anything is keyed, and Cashfree's verification runs
inside the keyed unit: either is away → 503 with Retry-After and nothing stored under the
key, so the same request goes through later. The account number is in no answer, log,
problem or stored key: the key's request hash takes its fingerprint instead. The name the
bank holds for a failed verification is in no PUT answer (nor the stored key): only
finance_admin's GET shows it.

A change of account is audited (`payee.payout_account.changed`); nothing else is told of it
yet (no event: nothing consumes one), so the payee's owners are not notified: the
cooling-off gives finance and support the time to act on the audit log.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.errors import CommunityNotFound, PayoutsUnavailable
from commdesk_billing.gateway.payouts import CashfreePayoutsClient
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.communities.deps import Communities
from commdesk_billing.modules.communities.directory import Community, CommunityDirectory
from commdesk_billing.modules.partners import service as partners
from commdesk_billing.modules.payees import auth, service
from commdesk_billing.modules.payees import repository as repo
from commdesk_billing.modules.payees.model import Payee, PayeeKind, PayeeStatus, PayoutAccount
from commdesk_billing.modules.payees.schemas import (
    BankAccountIn,
    PayeeCreate,
    PayeeOut,
    PayeePage,
    PayoutAccountIn,
    PayoutAccountOut,
    StatusChange,
    SubjectIdPattern,
)
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import documented
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.sealed import KeyRing
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["payees"])

_CURSOR = "payees"

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key",
        401: "No valid bearer token",
        403: "Caller may not do this",
        404: "No such payee (`payee_not_found`), community (`community_not_found`), partner "
        "(`partner_not_found`), or no payout account yet (`payout_account_not_found`)",
        409: "Payee exists (`payee_exists`), the account is another payee's "
        "(`payout_account_in_use`), Cashfree holds it under a beneficiary that cannot be "
        "used (`payout_beneficiary_conflict`: a retry is no help), or the same key in flight",
        413: "Body too large",
        422: "Body, id or query invalid, or the key reused with another body",
        502: "CommDesk's record of the community cannot be used (`community_record_invalid`)",
        503: "Cashfree (`gateway_unavailable`, `gateway_rate_limited`) or MongoDB "
        "(`community_directory_unavailable`) away, or payouts not configured "
        "(`payouts_unavailable`): nothing changed, repeat after Retry-After",
    }
)


def _keyed(request: Request, sub: str, key: str, body: dict[str, object]) -> KeyedRequest:
    return KeyedRequest(scope=sub, key=key, method=request.method, path=request.url.path, body=body)


def _rid(request: Request) -> str | None:
    return sane_header(request.headers.get("x-request-id"))


def _tools(request: Request) -> tuple[CashfreePayoutsClient, KeyRing]:
    """The process's Payouts client and sealing keys (`app.state`), or 503 when either is
    not configured."""
    client = getattr(request.app.state, "payouts", None)
    ring = getattr(request.app.state, "payout_keys", None)
    if client is None or ring is None:
        raise PayoutsUnavailable(
            "payout accounts are not configured here (Cashfree Payouts credentials and the "
            "sealing keys); nothing was changed"
        )
    return client, ring


async def _community(directory: CommunityDirectory, community_id: str) -> Community:
    community = await directory.get(community_id)
    if community is None:
        raise CommunityNotFound(f"community {community_id} is not known to CommDesk")
    return community


async def _owned_community(
    directory: CommunityDirectory, payee: Payee, caller: Principal
) -> Community | None:
    """The payee's community when the caller might be its owner (staff need no look-up)."""
    if payee.kind is not PayeeKind.community or not auth.may_be_owner(caller):
        return None
    return await directory.get(payee.subject_id)


def _account_seen(a: PayoutAccount) -> dict[str, object]:
    """An account as the audit log keeps it: masked, never the number or the VPA."""
    return {
        "version": a.version,
        "method": a.method.value,
        "account": a.account_mask,
        "verification": a.verification_status.value,
        "payouts_blocked_until": a.payouts_blocked_until.isoformat(),
    }


async def _payee(engine: Engine, payee_id: uuid.UUID) -> Payee:
    return await in_transaction(engine, lambda conn: service.require_payee(conn, payee_id))


@router.post(
    "/payees",
    status_code=201,
    response_model=PayeeOut,
    responses=_PROBLEMS,
    summary="Make a community (its owners, finance_admin) or a partner (finance_admin) a payee",
)
async def create_payee(
    body: PayeeCreate,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    subject_id = body.subject_id
    if body.kind is PayeeKind.community:
        auth.authorize_create_community(caller)
        community = await _community(directory, body.subject_id)
        auth.authorize_manage(caller, community)
        # The directory's own spelling of the id (an ObjectId's hex is lower case): one
        # community, one payee, whatever case the caller wrote it in.
        subject_id = community.id
    else:
        auth.authorize_create_partner(caller)

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        if body.kind is PayeeKind.partner:
            await partners.require_partner(conn, subject_id)
        payee = await service.create_payee(
            conn,
            kind=body.kind,
            subject_id=subject_id,
            display_name=body.display_name,
            by=caller.sub,
        )
        await audit.record(
            conn,
            caller,
            action="payee.created",
            target_type="payee",
            target_id=str(payee.id),
            details={"kind": payee.kind.value, "subject_id": payee.subject_id},
            request_id=_rid(request),
        )
        return Answer(201, PayeeOut.of(payee).model_dump(mode="json"))

    body_json = body.model_dump(mode="json")
    return respond(await run_keyed(engine, _keyed(request, caller.sub, key, body_json), work))


@router.get(
    "/payees",
    response_model=PayeePage,
    responses=_PROBLEMS,
    summary="Payees, newest first (finance_admin, auditor, support)",
)
async def list_payees(
    engine: Engine,
    caller: Caller,
    kind: PayeeKind | None = None,
    subject_id: Annotated[str | None, Query(pattern=SubjectIdPattern)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PayeePage:
    auth.authorize_list(caller)
    before = decode_cursor(_CURSOR, cursor) if cursor else None

    async def read(conn: AsyncConnection) -> PayeePage:
        payees = await repo.list_payees(
            conn, kind=kind, subject_id=subject_id, before=before, limit=limit + 1
        )
        more = len(payees) > limit
        page = payees[:limit]
        last = page[-1] if more else None
        return PayeePage(
            data=[PayeeOut.of(p) for p in page],
            next_cursor=encode_cursor(_CURSOR, last.created_at, last.id) if last else None,
        )

    return await in_transaction(engine, read)


@router.get(
    "/payees/{payee_id}",
    response_model=PayeeOut,
    responses=_PROBLEMS,
    summary="A payee (its community's owners; finance_admin, auditor, support)",
)
async def get_payee(
    payee_id: uuid.UUID, engine: Engine, caller: Caller, directory: Communities
) -> PayeeOut:
    payee = await _payee(engine, payee_id)
    auth.authorize_read(caller, await _owned_community(directory, payee, caller))
    return PayeeOut.of(payee)


@router.put(
    "/payees/{payee_id}/payout-account",
    response_model=PayoutAccountOut,
    responses=_PROBLEMS,
    summary="Set the payee's payout account: verified at Cashfree, a new version (owners of "
    "its community, finance_admin)",
)
async def put_payout_account(
    payee_id: uuid.UUID,
    body: PayoutAccountIn,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    payee = await _payee(engine, payee_id)
    auth.authorize_manage(caller, await _owned_community(directory, payee, caller))
    client, ring = _tools(request)
    req = body.request()
    policy = service.Policy(
        cooling_off=timedelta(seconds=settings.payout_cooling_off_s),
        name_match_min=settings.payout_name_match_min,
    )

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        account, created = await service.change_account(
            conn,
            client=client,
            ring=ring,
            policy=policy,
            payee_id=payee_id,
            req=req,
            by=caller.sub,
        )
        if created:
            # What was paid to before (masked; None for a first account), read under the
            # payee's change lock `change_account` took: no concurrent change slips between.
            prior = next(
                (a for a in await repo.history(conn, payee_id) if a.version < account.version),
                None,
            )
            await audit.record(
                conn,
                caller,
                action="payee.payout_account.changed",
                target_type="payee",
                target_id=str(payee_id),
                details={
                    "version": account.version,
                    "method": account.method.value,
                    "account": account.account_mask,
                    "verification": account.verification_status.value,
                    "name_match": account.name_match_result,
                    "payouts_blocked_until": account.payouts_blocked_until.isoformat(),
                    "cooling_off_s": account.cooling_off_s,
                },
                request_id=_rid(request),
                before=_account_seen(prior) if prior else None,
                after=_account_seen(account),
            )
        now = await service.require_payee(conn, payee_id)
        out = PayoutAccountOut.of(account, now, datetime.now(UTC))
        return Answer(200, out.model_dump(mode="json"))

    # The stored key keeps a hash of the request: the number's keyed fingerprint stands in
    # for it, so no digest of the bare number is ever kept.
    body_json = body.model_dump(mode="json")
    if isinstance(body, BankAccountIn):
        body_json["account_number"] = req.fingerprint(ring)
    return respond(await run_keyed(engine, _keyed(request, caller.sub, key, body_json), work))


@router.get(
    "/payees/{payee_id}/payout-account",
    response_model=PayoutAccountOut,
    responses=_PROBLEMS,
    summary="The payee's current payout account, masked, with its verification",
)
async def get_payout_account(
    payee_id: uuid.UUID, engine: Engine, caller: Caller, directory: Communities
) -> PayoutAccountOut:
    payee = await _payee(engine, payee_id)
    auth.authorize_read(caller, await _owned_community(directory, payee, caller))
    account = await in_transaction(engine, lambda conn: service.require_account(conn, payee_id))
    finance = caller.role is Role.finance_admin
    return PayoutAccountOut.of(account, payee, datetime.now(UTC), finance=finance)


async def _set_status(
    request: Request,
    engine: Engine,
    caller: Caller,
    key: str,
    payee_id: uuid.UUID,
    body: StatusChange,
    status: PayeeStatus,
) -> JSONResponse:
    auth.authorize_status(caller)

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        # Read under the row lock the change takes: the status it really changed from.
        was = await repo.lock_payee(conn, payee_id)
        payee = await service.set_status(conn, payee_id, status)
        await audit.record(
            conn,
            caller,
            action=f"payee.{'suspended' if status is PayeeStatus.suspended else 'reactivated'}",
            target_type="payee",
            target_id=str(payee_id),
            details={"reason": body.reason},
            request_id=_rid(request),
            before={"status": was.status.value} if was else None,
            after={"status": payee.status.value},
        )
        return Answer(200, PayeeOut.of(payee).model_dump(mode="json"))

    body_json = body.model_dump(mode="json")
    return respond(await run_keyed(engine, _keyed(request, caller.sub, key, body_json), work))


@router.post(
    "/payees/{payee_id}/suspend",
    response_model=PayeeOut,
    responses=_PROBLEMS,
    summary="Suspend a payee: never paid out while suspended (finance_admin; audited)",
)
async def suspend_payee(
    payee_id: uuid.UUID,
    body: StatusChange,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    return await _set_status(request, engine, caller, key, payee_id, body, PayeeStatus.suspended)


@router.post(
    "/payees/{payee_id}/reactivate",
    response_model=PayeeOut,
    responses=_PROBLEMS,
    summary="Reactivate a suspended payee (finance_admin; audited)",
)
async def reactivate_payee(
    payee_id: uuid.UUID,
    body: StatusChange,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    return await _set_status(request, engine, caller, key, payee_id, body, PayeeStatus.active)
