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

from fastapi import APIRouter, Body, Query, Request
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
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.sealed import KeyRing
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["payees"])

_CURSOR = "payees"

# Each route names its own errors (problems.errors); 401, 429 and 503 `database_unavailable`
# are added for all.
_KEY_MISSING = (
    "Idempotency-Key missing (`idempotency_key_required`) or malformed (`idempotency_key_invalid`)"
)
_TOO_LARGE = "Body too large (`payload_too_large`)"
_DIRECTORY = (
    "CommDesk's community directory (MongoDB) did not answer "
    "(`community_directory_unavailable`): nothing changed, repeat after Retry-After"
)
_RECORD = "CommDesk's record of the community cannot be used (`community_record_invalid`)"

# Request body examples: sent as they are by tests/contract/test_examples.py, so each must be
# accepted. The partner is the one the partners' example creates (`POST /v1/partners`).
_CREATE_EXAMPLES = {
    "partner": {
        "summary": "Make a partner a payee (finance_admin)",
        "value": {"kind": "partner", "subject_id": "acme-referrals", "display_name": "Acme"},
    },
}
_ACCOUNT_EXAMPLES = {
    "bank": {
        "summary": "A bank account (verified by Cashfree's bank-account verification)",
        "value": {
            "method": "bank",
            "account_holder": "Asha Verma",
            "account_number": "026291800001191",
            "ifsc": "YESB0000262",
        },
    },
    "upi": {
        "summary": "A UPI id (VPA)",
        "value": {"method": "upi", "account_holder": "Asha Verma", "vpa": "asha.verma@okhdfc"},
    },
}
_SUSPEND_EXAMPLE = {
    "default": {
        "summary": "Stop payouts while a chargeback is looked into",
        "value": {"reason": "chargeback investigation CB-2291"},
    }
}
_REACTIVATE_EXAMPLE = {
    "default": {
        "summary": "Payouts may resume",
        "value": {"reason": "chargeback CB-2291 closed in the community's favour"},
    }
}


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
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "A community the caller does not own, a partner and not finance_admin, or a "
            "service token (`forbidden`)",
            404: "CommDesk has no such community (`community_not_found`), or no such partner "
            "(`partner_not_found`)",
            409: "The community or partner is a payee already (`payee_exists`), or the same "
            "Idempotency-Key still running (`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "Body invalid (`validation_error`), or the key reused with another body "
            "(`idempotency_key_reused`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="Make a community (its owners, finance_admin) or a partner (finance_admin) a payee",
)
async def create_payee(
    body: Annotated[PayeeCreate, Body(openapi_examples=_CREATE_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    """Opens a payee: someone billing may pay out to, with a payable ledger account of its
    own (`payable_account`) that a community's earnings or a partner's share accrue on. A
    community is named by its CommDesk id (looked up in CommDesk's directory, and owned by
    the caller unless finance_admin acts), a partner by the id it was created with. The
    answer (201, `status` `active`) is not payable yet: set its payout account next
    (`PUT /v1/payees/{payee_id}/payout-account`)."""
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

    return respond(await run_keyed(engine, KeyedRequest.of(request, caller.sub, key, body), work))


@router.get(
    "/payees",
    response_model=PayeePage,
    responses=errors(
        {
            403: "Not finance_admin, auditor or support (`forbidden`)",
            422: "`limit` out of 1..200, an unknown `kind` or a malformed `subject_id` "
            "(`validation_error`), or a `cursor` this API did not give out (`invalid_cursor`)",
        }
    ),
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
    """Every payee, or those of one `kind` (and `subject_id`, to find a given community's
    or partner's payee), newest first, for staff looking after payouts. Pages of `limit`;
    pass `next_cursor` back as `cursor` until it is null."""
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
    responses=errors(
        {
            403: "Neither an owner of the payee's community nor finance_admin, auditor or "
            "support (`forbidden`)",
            404: "No such payee (`payee_not_found`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="A payee (its community's owners; finance_admin, auditor, support)",
)
async def get_payee(
    payee_id: uuid.UUID, engine: Engine, caller: Caller, directory: Communities
) -> PayeeOut:
    """One payee by id: whose it is (`kind`, `subject_id`), its `status` (a `suspended`
    payee is never paid out) and the ledger account its earnings accrue on. An owner's
    right to read it is checked against CommDesk's current record of the community."""
    payee = await _payee(engine, payee_id)
    auth.authorize_read(caller, await _owned_community(directory, payee, caller))
    return PayeeOut.of(payee)


@router.put(
    "/payees/{payee_id}/payout-account",
    response_model=PayoutAccountOut,
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "Not an owner of the payee's community nor finance_admin; a partner payee's "
            "account is finance_admin's alone (`forbidden`)",
            404: "No such payee (`payee_not_found`)",
            409: "The account is another payee's payout account (`payout_account_in_use`), "
            "Cashfree holds it under a beneficiary that cannot be used "
            "(`payout_beneficiary_conflict`: a retry is no help), or the same Idempotency-Key "
            "still running (`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "Body or `payee_id` invalid (`validation_error`), or the key reused with "
            "another body (`idempotency_key_reused`)",
            502: _RECORD,
            503: "Cashfree did not answer (`gateway_unavailable`) or is rate-limiting "
            "(`gateway_rate_limited`), payouts are not configured here "
            "(`payouts_unavailable`), or the community directory did not answer "
            "(`community_directory_unavailable`): nothing changed, repeat after Retry-After",
        }
    ),
    summary="Set the payee's payout account: verified at Cashfree, a new version (owners of "
    "its community, finance_admin)",
)
async def put_payout_account(
    payee_id: uuid.UUID,
    body: Annotated[PayoutAccountIn, Body(openapi_examples=_ACCOUNT_EXAMPLES)],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    """Verifies a bank account (Cashfree's bank-account verification, with a match of the
    holder's name) or a UPI id, registers it as the payee's Cashfree beneficiary and makes
    it the current account, a new `version`. The answer (200) says whether it was
    `verification.status` `verified` or `failed` (a failed one is never paid; give another)
    and `payouts_blocked_until`: a changed account is paid only after a cooling-off. The
    same account again, already verified, answers the current version unchanged."""
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
    return respond(
        await run_keyed(engine, KeyedRequest.of(request, caller.sub, key, body_json), work)
    )


@router.get(
    "/payees/{payee_id}/payout-account",
    response_model=PayoutAccountOut,
    responses=errors(
        {
            403: "Neither an owner of the payee's community nor finance_admin, auditor or "
            "support (`forbidden`)",
            404: "No such payee (`payee_not_found`), or it has no payout account yet "
            "(`payout_account_not_found`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="The payee's current payout account, masked, with its verification (its "
    "community's owners; finance_admin, auditor, support)",
)
async def get_payout_account(
    payee_id: uuid.UUID, engine: Engine, caller: Caller, directory: Communities
) -> PayoutAccountOut:
    """The account the payee is paid to now: its number or UPI id masked (never shown
    whole), how it was verified and `payable_now`, whether a settlement would pay it at
    this moment (active payee, verified, past its cooling-off). The name the bank holds for
    a failed verification is shown to finance_admin only."""
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

    return respond(await run_keyed(engine, KeyedRequest.of(request, caller.sub, key, body), work))


@router.post(
    "/payees/{payee_id}/suspend",
    response_model=PayeeOut,
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "Only finance_admin suspends a payee (`forbidden`)",
            404: "No such payee to suspend (`payee_not_found`)",
            409: "The same Idempotency-Key still running (`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "No `reason`, or it is empty or too long (`validation_error`), or the key "
            "reused with another body (`idempotency_key_reused`)",
        }
    ),
    summary="Suspend a payee: never paid out while suspended (audited; finance_admin)",
)
async def suspend_payee(
    payee_id: uuid.UUID,
    body: Annotated[StatusChange, Body(openapi_examples=_SUSPEND_EXAMPLE)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Stops every payout to the payee from now on: settlement runs pass it over while its
    earnings keep accruing on its payable account, so nothing is lost. The `reason` goes to
    the audit log with the status before and after; a payee suspended already stays so.
    Undo it with `POST /v1/payees/{payee_id}/reactivate`."""
    return await _set_status(request, engine, caller, key, payee_id, body, PayeeStatus.suspended)


@router.post(
    "/payees/{payee_id}/reactivate",
    response_model=PayeeOut,
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "Only finance_admin reactivates a payee (`forbidden`)",
            404: "No such payee to reactivate (`payee_not_found`)",
            409: "A request with this Idempotency-Key is still running (`idempotency_key_in_use`)",
            413: _TOO_LARGE,
            422: "The `reason` is missing, empty or too long (`validation_error`), or this "
            "Idempotency-Key came with another body (`idempotency_key_reused`)",
        }
    ),
    summary="Reactivate a suspended payee (audited; finance_admin)",
)
async def reactivate_payee(
    payee_id: uuid.UUID,
    body: Annotated[StatusChange, Body(openapi_examples=_REACTIVATE_EXAMPLE)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Makes a suspended payee `active` again: the next settlement run pays what accrued
    meanwhile, if its payout account is verified and past its cooling-off. The `reason` is
    audited with the status before and after; a payee active already stays so."""
    return await _set_status(request, engine, caller, key, payee_id, body, PayeeStatus.active)
