"""POST /v1/webhooks/cashfree/subscriptions: Cashfree Subscriptions' webhooks (cashfree.md
§12.8). Unauthenticated by bearer token; the signature (the PG scheme, with the PG client
secret, `gateway/subscription_webhooks.py`) is the authentication. Answers fast: the check,
one insert, one outbox row.

As PG's receiver (`modules/webhooks/api.py`): not signed by us, or stale → 401, nothing
stored; anything signed is stored raw once per signed identity (type, subscription, payment,
status; a repeat only counts itself) and answered 200, also an unreadable body (kept
`rejected`) or one about a subscription that is not ours (`unknown_subscription`). Nothing
is believed: a status event makes the worker ask Cashfree's API about the mandate
(`mandate.refresh`); a payment event about one of our charges makes it ask the subscription
payment API about that charge (`mandate.charge.webhook`, then the purchase path). The
pre-debit notice is only recorded on the charge (`pdn_at`): no money moves on it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Config, Engine
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.signature import Refused
from commdesk_billing.gateway.subscription_webhooks import (
    SubscriptionEvent,
    SubscriptionWebhook,
    read_subscription_webhook,
)
from commdesk_billing.modules.mandates import repository as repo
from commdesk_billing.modules.payments import mandate_truth
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.problems import errors, problem
from commdesk_billing.queues import outbox
from commdesk_billing.security import addresses
from commdesk_billing.security.text import unstorable_text
from commdesk_billing.security.timestamps import IST

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class SubscriptionWebhookReceipt(BaseModel):
    """What became of a signed Subscriptions delivery."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "accepted"}]})

    status: Literal["accepted", "duplicate", "unknown_subscription", "rejected"] = Field(
        description="accepted: the mandate (and the charge, for a payment event) will be asked "
        "of Cashfree's API; duplicate: a repeat of a stored delivery; unknown_subscription: "
        "no mandate of ours; rejected: signed but unreadable, or not a subscription event "
        "(kept as evidence)"
    )


# The signature headers Cashfree sends (read from the raw request, so listed here).
_SIGNED: dict[str, Any] = {
    "parameters": [
        {
            "name": "x-webhook-signature",
            "in": "header",
            "required": True,
            "description": "base64 HMAC-SHA256, with the PG client secret (Subscriptions "
            "signs as PG does), of the timestamp followed by the raw body",
            "schema": {"type": "string", "maxLength": 200},
        },
        {
            "name": "x-webhook-timestamp",
            "in": "header",
            "required": True,
            "description": "Milliseconds since the epoch, within BILLING_WEBHOOK_MAX_AGE_S "
            "(a day) in the past and BILLING_WEBHOOK_MAX_FUTURE_S ahead",
            "schema": {"type": "string", "pattern": "^[0-9]{1,16}$"},
        },
    ]
}


def _refuse(status: int, code: str, detail: str) -> JSONResponse:
    return problem(status, code, "Webhook refused", detail)


def _secrets(settings: Settings) -> list[str]:
    return [settings.cashfree_client_secret.get_secret_value()] + [
        s.get_secret_value() for s in settings.cashfree_previous_secrets
    ]


def _text(value: str | None, n: int = 250) -> str | None:
    if value is None or unstorable_text(value) is not None:
        return None
    return value[:n]


@router.post(
    "/cashfree/subscriptions",
    response_model=SubscriptionWebhookReceipt,
    openapi_extra=_SIGNED,
    summary="Cashfree Subscriptions webhooks on mandates and their charges (Cashfree only: "
    "signed with the PG client secret, no token)",
    responses={
        200: {"description": "Stored, or a repeat counted: what became of the delivery (`status`)"},
        **errors(
            {
                400: "JSON nested more than 32 deep (`json_too_deep`), refused before the "
                "signature check",
                401: "Signature headers missing (`webhook_unsigned`), a malformed timestamp "
                "(`webhook_timestamp_invalid`), a signature no configured PG secret makes "
                "(`webhook_signature_invalid`), or a timestamp outside the window "
                "(`webhook_stale`); nothing stored",
                403: "Source address not on BILLING_WEBHOOK_ALLOWED_IPS "
                "(`webhook_source_refused`); nothing stored",
                415: "A body sent as something other than JSON (`unsupported_media_type`)",
            }
        ),
    },
)
async def subscriptions_webhook(request: Request, engine: Engine, settings: Config) -> JSONResponse:
    """Cashfree Subscriptions' deliveries about a mandate (authorisation, status changes)
    and the charges on it (pre-debit notice, payment success or failure, refunds). A signed
    delivery is stored once per identity and answered 200; nothing in it is believed: the
    worker asks Cashfree's subscription API about the mandate and the charge, and only that
    answer moves money. A pre-debit notice is only recorded on its charge."""
    ip = addresses.client_ip(request.scope)
    if not addresses.ip_allowed(settings, ip):
        return _refuse(403, "webhook_source_refused", "source address not allowed")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    hook: SubscriptionWebhook | None = None
    unreadable: str | None = None
    try:
        hook = read_subscription_webhook(
            body,
            headers,
            _secrets(settings),
            max_age_s=settings.webhook_max_age_s,
            max_future_s=settings.webhook_max_future_s,
        )
    except Refused as exc:
        if exc.code not in ("webhook_unreadable", "webhook_unexpected"):
            return _refuse(401, exc.code, exc.detail)
        unreadable = exc.detail[:300]
    outcome = await in_transaction(
        engine, lambda conn: _receive(conn, body, headers, hook, unreadable)
    )
    return JSONResponse({"status": outcome}, status_code=200)


async def _receive(
    conn: AsyncConnection,
    body: bytes,
    headers: dict[str, str],
    hook: SubscriptionWebhook | None,
    unreadable: str | None,
) -> str:
    # The bytes as received (bytea: any byte can be kept), the evidence for whoever looks.
    common: dict[str, Any] = {"raw": body, "headers": signature.evidence(headers)}
    if hook is None:
        stored = {
            **common,
            "key": "unreadable:" + hashlib.sha256(body).hexdigest(),
            "type": "(unreadable)",
            "subscription_id": None,
            "payment_id": None,
            "status": None,
            "outcome": f"rejected: {unreadable}",
        }
        _id, inserted = await repo.store_webhook(conn, stored)
        log.warning("subscription_webhook.unreadable", reason=unreadable)
        return "rejected" if inserted else "duplicate"
    data = hook.data
    subscription_id = _text(hook.subscription_id)
    payment_id = _text(data.payment_id, 100) if hook.is_payment_event else None
    status = _text(hook.subscription_status or data.payment_status, 50)
    identity = json.dumps([hook.type, subscription_id, payment_id, status])
    if hook.is_refund_event:
        # One refund's status: a refund of a charge has its own identity (its id, status).
        payment_id = _text(data.payment_id, 100)
        status = _text(data.refund_status, 50)
        identity = json.dumps([hook.type, subscription_id, _text(data.refund_id, 100), status])
    mandate = await repo.by_subscription(conn, subscription_id) if subscription_id else None
    charge = (
        await payments.by_order_id(conn, payment_id)
        if payment_id and hook.type != SubscriptionEvent.AUTH_STATUS
        else None
    )
    if charge is not None and (not charge.on_mandate or charge.subscription_id != subscription_id):
        charge = None  # not a charge on this subscription: never acted on
    stored = {
        **common,
        "key": hashlib.sha256(identity.encode()).hexdigest(),
        "type": hook.type[:100],
        "subscription_id": subscription_id,
        "payment_id": payment_id,
        "status": status,
        "outcome": "accepted" if mandate else "unknown_subscription",
    }
    webhook_id, inserted = await repo.store_webhook(conn, stored)
    if not inserted:
        return "duplicate"
    if mandate is None:
        log.warning("subscription_webhook.unknown_subscription")
        return "unknown_subscription"
    if hook.is_refund_event:
        await _refund_moved(conn, data.refund_id, charge, subscription_id)
        return "accepted"
    if hook.type == SubscriptionEvent.PAYMENT_NOTIFICATION_INITIATED and charge is not None:
        # Cashfree's word that the payer was notified: recorded for the member to see (the
        # debit follows no earlier than 24 h later); the charge's status is still asked.
        await mandate_truth.note_pre_debit_notice(
            conn, charge.order_id, (hook.event_time or datetime.now(IST)).astimezone(IST)
        )
    acts_on_charge = charge is not None and hook.type in SubscriptionEvent.PAYMENT_EVENTS
    if charge is not None and acts_on_charge:
        await outbox.send(
            conn,
            "payment.processing",
            "mandate.charge.webhook",
            {
                "payment_id": str(charge.id),
                "order_id": charge.order_id,
                "order_expires_at": charge.order_expires_at.isoformat(),
                "source": "webhook",
                "subscription_id": mandate.subscription_id,
                "webhook_id": str(webhook_id),
            },
            correlation_id=str(charge.id),
        )
    # Every event about a mandate may change it (an authorisation, a revoke, a charge that
    # put it on hold): its status is asked of Cashfree. The webhook's row records the
    # charge's outcome when it was about one, else the mandate's.
    refresh: dict[str, Any] = {"mandate_id": str(mandate.id)}
    if not acts_on_charge:
        refresh["webhook_id"] = str(webhook_id)
    await outbox.send(
        conn, "payment.processing", "mandate.refresh", refresh, correlation_id=str(mandate.id)
    )
    return "accepted"


async def _refund_moved(
    conn: AsyncConnection,
    refund_ref: str | None,
    charge: Payment | None,
    subscription_id: str | None,
) -> None:
    """`SUBSCRIPTION_REFUND_STATUS`: a refund of one of our charges on this mandate moved.
    Not believed: the refunds module finds the refund by its id at Cashfree (ours) and asks
    Cashfree's refund API, as for a PG refund's webhook. A refund of no charge of ours is
    only stored."""
    if not refund_ref or charge is None:
        log.warning("subscription_webhook.unknown_refund", subscription_id=subscription_id)
        return
    await outbox.send(
        conn,
        "refund.processing",
        "refund.subscription_webhook",
        {"refund_ref": refund_ref[:100], "payment_id": str(charge.id)},
        correlation_id=str(charge.id),
    )
