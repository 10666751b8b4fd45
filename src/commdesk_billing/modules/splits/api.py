"""Easy Split routes: finance registers a community as a Cashfree vendor (its split
sponsorships are then settled to it by Cashfree), finance and the community's owners read
it, and Cashfree's vendor settlement webhooks arrive.

The registration POST takes an Idempotency-Key: a repeat answers as the first did (the
vendor id is derived from the community's, so Cashfree never holds two for one community).
The webhook route authenticates by Cashfree's signature (the PG client secret), not a token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.errors import CommunityNotFound, PayoutsUnavailable, SplitVendorNotFound
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.communities.deps import Communities
from commdesk_billing.modules.splits import auth, service, settlements
from commdesk_billing.modules.splits.schemas import VendorOut, VendorRequest
from commdesk_billing.problems import MEDIA_TYPE, errors, problem_body
from commdesk_billing.security import addresses
from commdesk_billing.security.sealed import KeyRing
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["easy split"])

CommunityId = Annotated[
    str,
    Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="CommDesk's community id"),
]

# Each route names its own errors (problems.errors); 401 (token routes), 429 and 503
# `database_unavailable` are added for all.
_RECORD = "CommDesk's record of the community is unusable (`community_record_invalid`)"
_DIRECTORY = (
    "CommDesk's MongoDB did not answer (`community_directory_unavailable`): nothing "
    "changed, repeat after Retry-After"
)

# Sent as it is by tests/contract/test_examples.py (with a finance_admin token): it must be
# accepted.
_VENDOR_EXAMPLES = {
    "business": {
        "summary": "A registered society, with its GSTIN",
        "value": {
            "name": "Chess Club Society",
            "email": "treasurer@chessclub.example",
            "phone": "9876543210",
            "account_type": "BUSINESS",
            "business_type": "NGO",
            "pan": "ABCDE1234F",
            "gstin": "29ABCDE1234F1Z5",
        },
    }
}


def _client(request: Request) -> CashfreeClient:
    client: CashfreeClient = request.app.state.cashfree
    return client


def _ring(request: Request) -> KeyRing:
    ring: KeyRing | None = getattr(request.app.state, "payout_keys", None)
    if ring is None:
        raise PayoutsUnavailable(
            "payout accounts cannot be read here (the sealing keys are not configured); "
            "nothing was changed"
        )
    return ring


@router.post(
    "/communities/{community_id}/split-vendor",
    status_code=201,
    response_model=VendorOut,
    responses=errors(
        {
            400: "Idempotency-Key missing (`idempotency_key_required`) or malformed "
            "(`idempotency_key_invalid`)",
            403: "Only finance_admin registers a vendor (`forbidden`)",
            404: "No such community in CommDesk's MongoDB (`community_not_found`)",
            409: "The community is suspended (`community_suspended`), has no payee with a "
            "verified current payout account (`split_vendor_account_missing`) or only one "
            "still in its cooling-off (`split_vendor_account_cooling_off`, with "
            "`payouts_blocked_until`), or the same Idempotency-Key still running "
            "(`idempotency_key_in_use`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body or community id invalid (`validation_error`), or the key reused with "
            "another body (`idempotency_key_reused`)",
            502: f"Cashfree refused the vendor (`gateway_rejected`), or {_RECORD}",
            503: "Cashfree did not answer (`gateway_unavailable`) or is rate-limiting us "
            "(`gateway_rate_limited`), or the payout sealing keys are not configured "
            f"(`payouts_unavailable`): nothing changed; or {_DIRECTORY}",
        }
    ),
    summary="Register the community as a Cashfree Easy Split vendor with its verified payout "
    "account (finance_admin)",
)
async def register_vendor(
    community_id: CommunityId,
    body: Annotated[VendorRequest, Body(openapi_examples=_VENDOR_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    directory: Communities,
) -> JSONResponse:
    """Sends Cashfree the community payee's current, verified payout account with the KYC
    details given here, under a vendor id derived from the community's (registering again
    updates the same vendor). The answer is the vendor, `IN_BENE_CREATION` while Cashfree
    checks it; once `ACTIVE`, new sponsorships of the community take the split path. The
    PAN is kept masked; the registration is written to the audit log."""
    auth.authorize_register(caller)
    ring = _ring(request)
    # Outside the keyed work: a directory outage is a 503 the key must not keep.
    community = await directory.require_active(community_id)

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        vendor = await service.register(
            conn,
            _client(request),
            ring,
            community_id=community.id,
            req=body,
            by=caller.sub,
        )
        await audit.record(
            conn,
            caller,
            action="split_vendor.registered",
            target_type="community",
            target_id=community.id,
            details={
                "vendor_id": vendor.vendor_id,
                "status": vendor.status,
                "account": vendor.account_mask,
            },
            request_id=sane_header(request.headers.get("x-request-id")),
        )
        return Answer(201, VendorOut.of(vendor).model_dump(mode="json"))

    # The stored key keeps a hash of the request: with the PAN in it, everything else being
    # on the vendor's row (and its last four on `pan_mask`), a guessed PAN could be confirmed
    # offline. A keyed fingerprint of it stands in (as the payees' key does for a number).
    hashed = body.model_dump(mode="json")
    hashed["pan"] = ring.fingerprint(f"pan:{body.pan}")
    keyed = KeyedRequest.of(request, caller.sub, key, hashed)
    return respond(await run_keyed(engine, keyed, work))


@router.get(
    "/communities/{community_id}/split-vendor",
    response_model=VendorOut,
    responses=errors(
        {
            403: "Not one of the community's owners, finance_admin or auditor (`forbidden`)",
            404: "No such community in CommDesk's MongoDB (`community_not_found`), or it is "
            "not a vendor (`split_vendor_not_found`)",
            422: "A community id that is not 1-64 of `A-Z a-z 0-9 - _` (`validation_error`)",
            502: _RECORD,
            503: _DIRECTORY,
        }
    ),
    summary="The community's Easy Split vendor, its status asked of Cashfree now (its owners, "
    "finance_admin, auditor)",
)
async def get_vendor(
    community_id: CommunityId,
    request: Request,
    engine: Engine,
    caller: Caller,
    directory: Communities,
) -> VendorOut:
    """The community's vendor with its status asked of Cashfree now (when Cashfree does
    not answer, as last seen: `status_checked_at` says when). `active` says whether new
    sponsorships are split to it; `remarks` carry Cashfree's reason for a vendor it
    blocked."""
    community = await directory.get(community_id)
    if community is None:
        raise CommunityNotFound(f"community {community_id} is not known to CommDesk")
    auth.authorize_read(caller, community)
    vendor = await service.refresh(engine, _client(request), community.id)
    if vendor is None:
        raise SplitVendorNotFound(f"community {community.id} is not an Easy Split vendor")
    return VendorOut.of(vendor)


@router.post(
    "/webhooks/cashfree/vendor-settlements",
    summary="Cashfree's vendor settlement webhooks (signed with the PG client secret)",
    responses={
        200: {
            "description": "Stored: applied, duplicate, unknown_vendor, ignored, or rejected "
            "(signed but unreadable)"
        },
        **errors(
            {
                401: "Signature or timestamp headers missing (`webhook_unsigned`), the "
                "timestamp not epoch ms (`webhook_timestamp_invalid`), a signature that does "
                "not match (`webhook_signature_invalid`) or a stale one (`webhook_stale`): "
                "nothing stored",
                403: "Source address not on the allow-list (`webhook_source_refused`)",
            }
        ),
    },
)
async def vendor_settlement_webhook(
    request: Request, engine: Engine, settings: Config
) -> JSONResponse:
    """Cashfree's word that it paid a vendor (a community) what it held for it, failed to,
    or reversed such a settlement; the signature with the PG client secret authenticates
    it, no token. Each delivery is stored once and applied to the community's settlements
    due in whatever order they arrive; the answer says what became of it. Not stored
    (503): Cashfree delivers it again."""
    ip = addresses.client_ip(request.scope)
    if not addresses.ip_allowed(settings, ip):
        return _refuse(403, "webhook_source_refused", "source address not allowed")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        receipt = await settlements.receive(engine, settings, body, headers)
    except settlements.WebhookRefused as exc:
        return _refuse(401, exc.code, exc.detail)
    return JSONResponse(
        {
            "status": receipt.outcome,
            "webhook_id": str(receipt.webhook_id) if receipt.webhook_id else None,
        },
        status_code=200,
    )


def _refuse(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse(
        problem_body(status=status, code=code, title="Webhook refused", detail=detail),
        status_code=status,
        media_type=MEDIA_TYPE,
    )
