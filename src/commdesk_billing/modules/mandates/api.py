"""Mandate routes: set one up (returns the link where the member authorises it), read it,
list the caller's, and revoke it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request

from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import auth, service
from commdesk_billing.modules.mandates.schemas import MandateList, MandateOut, MandateRequest
from commdesk_billing.problems import errors

router = APIRouter(prefix="/v1", tags=["mandates"])

_NOT_FOUND = "No such mandate (`not_found`)"
# Sent as it is by tests/contract/test_examples.py: it must be accepted.
_MANDATE_EXAMPLE = {
    "default": {
        "summary": "A mandate of up to ₹2,000 a debit",
        "value": {
            "max_amount_paise": 200000,
            "customer_phone": "9876543210",
            "customer_email": "asha@example.com",
        },
    }
}


def _client(request: Request) -> SubscriptionsClient:
    client: SubscriptionsClient = request.app.state.subscriptions
    return client


@router.post(
    "/mandates",
    status_code=201,
    response_model=MandateOut,
    responses=errors(
        {
            400: "Idempotency-Key missing (`idempotency_key_required`) or malformed "
            "(`idempotency_key_invalid`)",
            403: "Services cannot set up mandates (`forbidden`)",
            409: "The same Idempotency-Key still running (`idempotency_key_in_use`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid (`validation_error`), a maximum above ₹15,000 "
            "(`mandate_amount_too_high`), or the key reused (`idempotency_key_reused`)",
            502: "Cashfree refused the mandate (`gateway_rejected`)",
            503: "Cashfree did not answer (`gateway_unavailable`): repeat with the same "
            "Idempotency-Key",
        }
    ),
    summary="Set up a UPI AutoPay / card mandate; answer carries its authorization link",
)
async def create_mandate(
    body: Annotated[MandateRequest, Body(openapi_examples=_MANDATE_EXAMPLE)],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> MandateOut:
    """Opens a subscription at Cashfree for recurring debits of up to `max_amount_paise`
    each, and answers the mandate as `pending` with where the member authorises it: the
    frontend opens Cashfree's checkout from `subscription_session_id` (or sends the member
    to `authorization_url`). Once authorised it turns `active`, and auto-recharge and INR
    subscriptions can charge it."""
    m = await service.create(engine, _client(request), settings, caller, body, key)
    return MandateOut.of(m, service.authorization_url(settings, m))


@router.get(
    "/mandates",
    response_model=MandateList,
    responses=errors({403: "Services have no mandates (`forbidden`)"}),
    summary="The caller's own mandates, newest first",
)
async def list_mandates(engine: Engine, settings: Config, caller: Caller) -> MandateList:
    """Every mandate the member set up (the latest hundred), whatever its status, so a
    settings page can show which one pays and offer to revoke it."""
    auth.authorize_create(caller)
    rows = await service.list_mine(engine, caller)
    return MandateList(
        data=[MandateOut.of(m, service.authorization_url(settings, m)) for m in rows]
    )


@router.get(
    "/mandates/{mandate_id}",
    response_model=MandateOut,
    responses=errors({403: "Not the member's mandate, nor staff (`forbidden`)", 404: _NOT_FOUND}),
    summary="One mandate, its status asked of Cashfree when it may have moved",
)
async def get_mandate(
    mandate_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> MandateOut:
    """A mandate for its member or staff. While it waits for authorisation (or may have
    been paused) and was not asked about lately, Cashfree is asked first, so polling this
    after the member returns from authorising shows `active` without waiting for the
    webhook; if Cashfree does not answer, the stored mandate is answered."""
    m = await service.read(engine, _client(request), settings, caller, mandate_id)
    return MandateOut.of(m, service.authorization_url(settings, m))


@router.post(
    "/mandates/{mandate_id}/revoke",
    response_model=MandateOut,
    responses=errors(
        {
            403: "Only the member who set it up revokes a mandate (`forbidden`)",
            404: _NOT_FOUND,
            409: "The mandate has already ended (`mandate_not_revocable`)",
        }
    ),
    summary="Revoke the mandate: unusable at once, then cancelled at Cashfree",
)
async def revoke_mandate(
    mandate_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> MandateOut:
    """No charge can be raised on the mandate from this moment; the cancellation at
    Cashfree follows (a cancel that fails is sent again by the sync job). Answers the
    mandate as `revoked`; revoking it again answers the same."""
    m = await service.revoke(engine, _client(request), caller, mandate_id)
    return MandateOut.of(m, service.authorization_url(settings, m))
